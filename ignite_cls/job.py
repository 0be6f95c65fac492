"""What one command runs: the merged config plus the command and flags it came from.

The CLI turns its flags into config overrides (``cli.FLAG_KEYS``); ``--cfg-options`` apply
last, over every flag. Kept free of heavy imports: the CLI builds the job before torch is
loaded, so flag and config mistakes are reported at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignite_cls.config import check_config, load_config, setting, with_defaults
from ignite_cls.errors import UserError
from ignite_cls.launchers import launch_mode, launching_rank
from ignite_cls.overrides import apply_options, parse_cfg_options

OUT_FORMATS = {".pkl": "pickle", ".pickle": "pickle", ".json": "json", ".csv": "csv"}
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")

logger = logging.getLogger("ignite_cls")


@dataclass
class Job:
    """Everything a worker process needs; picklable, so spawned workers receive it whole."""

    command: str  # train | test | predict | export | config | benchmark
    config_path: str
    cfg: dict
    flags: dict[str, Any] = field(default_factory=dict)  # as given on the command line
    checkpoint: str | None = None  # test, predict, export
    inputs: list[str] = field(default_factory=list)  # predict: the INPUT arguments
    launcher: str = "none"  # how the processes start: none | spawn | pytorch | slurm | mpi
    rank: int = 0  # this process's rank as its launcher program set it (0 before a spawn)

    @property
    def config_stem(self) -> str:
        return Path(self.config_path).stem

    @property
    def work_dir(self) -> Path:
        return Path(self.cfg["work_dir"])


def make_job(
    command: str,
    config: str,
    flags: dict[str, Any],
    overrides: dict[str, Any],
    cfg_options: list[str] | str | None,
    checkpoint: str | None = None,
    inputs: list[str] | None = None,
) -> Job:
    """Load the config, apply the flags' ``overrides`` then ``--cfg-options``, fill defaults,
    validate, and resolve how the processes start."""
    if isinstance(cfg_options, str):
        cfg_options = [cfg_options]
    options = parse_cfg_options([str(item) for item in cfg_options or []])
    cfg = with_defaults(load_config(config))
    cfg = apply_options(cfg, overrides)
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
    elif command == "predict" and setting(cfg, "predict.out"):
        check_out_file(setting(cfg, "predict.out"))
    elif command == "export":
        if not setting(cfg, "export.out"):
            raise UserError("export needs --out FILE")
        check_out_file(setting(cfg, "export.out"), formats=None)
    return Job(
        command=command,
        config_path=str(config),
        cfg=cfg,
        flags=flags,
        checkpoint=checkpoint,
        inputs=[str(item) for item in inputs or []],
        launcher=launch_mode(cfg["launcher"], cfg["nproc_per_node"]),
        rank=launching_rank(),
    )


def check_test_outputs(test_cfg: dict) -> None:
    """Reject output settings that would fail only after inference."""
    out, item = test_cfg["out"], test_cfg["out_item"]
    if item is not None and not out:
        raise UserError("--out-item needs --out FILE")
    if item not in (None, "pred", "metrics"):
        raise UserError(f"--out-item must be pred or metrics, got '{item}'")
    if out:
        check_out_file(out)
        if Path(str(out)).suffix.lower() == ".csv" and item == "metrics":
            raise UserError(
                "--out .csv holds predictions only; use .json or .pkl for --out-item metrics"
            )
    if int(test_cfg["interval"]) < 1:
        raise UserError(f"--interval must be 1 or more, got {test_cfg['interval']}")


def check_out_file(out: Any, formats: dict[str, str] | None = OUT_FORMATS) -> None:
    """An ``--out`` file must go into an existing folder and, with ``formats``, have one of
    their extensions."""
    out = Path(str(out))
    suffix = out.suffix.lower()
    if formats is not None and suffix not in formats:
        known = ", ".join(formats)
        raise UserError(f"--out {out}: unknown extension '{suffix}' (use {known})")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    if os.path.isdir(out):
        raise UserError(f"--out {out} is a folder; give a file name")
