"""What one command runs: the merged config plus the command and flags it came from.

Each CLI flag becomes one config override; ``--cfg-options`` apply last, over every flag.
Kept free of heavy imports: the CLI builds the job before torch is loaded, so flag and
config mistakes are reported at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignite_cls.config import (
    apply_options,
    check_config,
    load_config,
    parse_cfg_options,
    with_defaults,
)
from ignite_cls.errors import UserError

OUT_FORMATS = {".pkl": "pickle", ".pickle": "pickle", ".json": "json", ".csv": "csv"}
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")

logger = logging.getLogger("ignite_cls")


@dataclass
class Job:
    """Everything a worker process needs; picklable, so spawned workers receive it whole."""

    command: str  # train | test
    config_path: str
    cfg: dict
    flags: dict[str, Any] = field(default_factory=dict)  # as given on the command line
    checkpoint: str | None = None  # test only

    @property
    def config_stem(self) -> str:
        return Path(self.config_path).stem

    @property
    def work_dir(self) -> Path:
        return Path(self.cfg["work_dir"])


def flag_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """The config keys the given CLI flags set (flags left at None/False set nothing)."""
    mapping = {
        "work_dir": "work_dir",
        "resume": "resume",
        "launcher": "launcher",
        "nproc_per_node": "nproc_per_node",
        "out": "test.out",
        "out_item": "test.out_item",
        "show_dir": "test.show_dir",
        "show": "test.show",
        "interval": "test.interval",
        "wait_time": "test.wait_time",
    }
    switches = {
        "amp": ("amp.enabled", True),
        "no_validate": ("schedule.validate", False),
        "auto_scale_lr": ("auto_scale_lr.enable", True),
    }
    overrides: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or value is False:
            continue
        if name in switches:
            key, setting = switches[name]
            overrides[key] = setting
        elif name in mapping:
            overrides[mapping[name]] = "auto" if (name == "resume" and value is True) else value
    return overrides


def make_job(
    command: str,
    config: str,
    flags: dict[str, Any],
    cfg_options: list[str] | str | None,
    checkpoint: str | None = None,
) -> Job:
    """Load the config, apply flags then ``--cfg-options``, fill defaults and validate."""
    if isinstance(cfg_options, str):
        cfg_options = [cfg_options]
    options = parse_cfg_options([str(item) for item in cfg_options or []])
    cfg = with_defaults(load_config(config))
    cfg = apply_options(cfg, flag_overrides(flags))
    cfg = apply_options(cfg, options)
    for warning in check_config(cfg, typos_are_errors=command != "config"):
        logger.warning(f"warning: {warning}")
    if not cfg["work_dir"]:
        cfg["work_dir"] = str(Path("runs") / Path(config).stem)
    cfg["work_dir"] = str(cfg["work_dir"])
    if cfg["launcher"] not in LAUNCHERS:
        raise UserError(
            f"--launcher must be one of {', '.join(LAUNCHERS)}, got '{cfg['launcher']}'"
        )
    if command == "test":
        check_test_outputs(cfg["test"])
    return Job(
        command=command, config_path=str(config), cfg=cfg, flags=flags, checkpoint=checkpoint
    )


def check_test_outputs(test_cfg: dict) -> None:
    """Reject output settings that would fail only after inference."""
    out, item = test_cfg["out"], test_cfg["out_item"]
    if item is not None and not out:
        raise UserError("--out-item needs --out FILE")
    if item not in (None, "pred", "metrics"):
        raise UserError(f"--out-item must be pred or metrics, got '{item}'")
    if out:
        out = Path(str(out))
        suffix = out.suffix.lower()
        if suffix not in OUT_FORMATS:
            raise UserError(
                f"--out {out}: unknown extension '{suffix}' (use .pkl, .pickle, .json or .csv)"
            )
        if suffix == ".csv" and item == "metrics":
            raise UserError(
                "--out .csv holds predictions only; use .json or .pkl for --out-item metrics"
            )
        if not out.parent.is_dir():
            raise UserError(f"--out {out}: folder {out.parent} does not exist")
        if os.path.isdir(out):
            raise UserError(f"--out {out} is a folder; give a file name")
    if int(test_cfg["interval"]) < 1:
        raise UserError(f"--interval must be 1 or more, got {test_cfg['interval']}")
