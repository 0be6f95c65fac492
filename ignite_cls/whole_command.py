"""Whole-command figures for ``benchmark``: ``python -m ignite_cls train`` and ``test`` as a user
runs them (separate processes, MLflow on), side by side with ``benchmarks/plain.py`` doing the
same work the way a careful user writes it in plain PyTorch.

Each command runs ``repeats`` times against its plain counterpart in A B B A order; a figure
is the median over the repeats, a ratio the median of the side-by-side pairs. One unmeasured
run of each comes first (it creates the MLflow store and warms the file cache, as earlier
work on a machine does). The times inside a run come from the timestamps of the run's own
log file (a training record every iteration): the first iteration, the last, the last line.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ignite_cls.config import format_config, setting
from ignite_cls.errors import UserError

PLAIN_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "plain.py"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")
OURS = {  # log file, first-iteration and any-iteration markers
    "train": ("train_*.log", re.compile(r"DEBUG epoch 1 iter 1: "), re.compile(r" iter \d+: ")),
    "test": ("test_*.log", None, None),
}
PLAIN = {
    "train": ("plain_train.log", re.compile(r"epoch 1 iteration 1: "), re.compile(r" iteration ")),
    "test": ("plain_test.log", None, None),
}


def plain_spec(cfg: dict, num_classes: int, out: Path) -> dict:
    """What ``benchmarks/plain.py`` needs to do the config's work."""
    amp = (setting(cfg, "amp.dtype") or "auto") if setting(cfg, "amp.enabled") else None
    keys = ("root", "batch_size", "num_workers", "pipeline")
    return {
        "arch": setting(cfg, "model.arch"),
        "cifar_stem": setting(cfg, "model.cifar_stem"),
        "num_classes": num_classes,
        "mean": setting(cfg, "data.mean"),
        "std": setting(cfg, "data.std"),
        **{s: {k: setting(cfg, f"data.{s}.{k}") for k in keys} for s in ("train", "val", "test")},
        "optimizer": dict(setting(cfg, "optimizer")),
        "epochs": setting(cfg, "schedule.max_epochs"),
        "label_smoothing": setting(cfg, "loss.label_smoothing"),
        "amp": amp,  # None, float16, bfloat16 or auto (float16 on CUDA, else bfloat16)
        "seed": setting(cfg, "seed"),
        "out": str(out),
    }


def _stamps(log: Path, first: re.Pattern | None, iteration: re.Pattern | None) -> dict:
    """Wall-clock times (seconds since the epoch) of the marked lines of a log file."""
    found: dict[str, float] = {}
    for line in log.read_text().splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        found["last_line"] = when
        if first is not None and "first_iter" not in found and first.search(match[2]):
            found["first_iter"] = when
        if iteration is not None and iteration.search(match[2]):
            found["last_iter"] = when
    return found


def timed(command: list[str], cwd: Path, log_folder: Path, markers: tuple) -> dict[str, float]:
    """Run ``command`` to its end; its wall time, and from its log (``markers``) the time to
    the first iteration, from the last iteration to exit, from the last line to exit."""
    start, clock = time.time(), time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - clock
    end = start + wall
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark: {' '.join(command[1:4])} failed: {last}")
    pattern, first, iteration = markers
    log = max(log_folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    stamps = _stamps(log, first, iteration)
    times = {"wall_s": wall, "last_line_to_exit_s": end - stamps["last_line"]}
    if "first_iter" in stamps:
        times["first_iter_s"] = stamps["first_iter"] - start
        times["last_iter_to_exit_s"] = end - stamps["last_iter"]
    return times


def whole_command_figures(job, num_classes: int, repeats: int) -> dict[str, float]:
    """Train and test, ours against plain, ``repeats`` pairs each (see the module docstring);
    {} with a notice when the plain script is absent or the data are not image folders."""
    cfg = job.cfg
    folders = all(setting(cfg, f"data.{s}.type") == "folder" for s in ("train", "val", "test"))
    if not PLAIN_SCRIPT.is_file() or not folders:
        why = "no benchmarks/plain.py" if folders else "the data are not image folders"
        print(f"notice: no whole-command figures ({why})", file=sys.stderr)
        return {}
    with tempfile.TemporaryDirectory(prefix="ignite_cls_bench_") as folder:
        root = Path(folder)
        config = root / f"{job.config_stem}.py"
        config.write_text(format_config({**cfg, "work_dir": None, "resume": None}))
        spec = root / "plain.json"
        spec.write_text(json.dumps(plain_spec(cfg, num_classes, root / "plain")))
        epochs = setting(cfg, "schedule.max_epochs")
        ours_train = [sys.executable, "-m", "ignite_cls", "train", str(config), "--work-dir"]
        ours_train += ["ours", "--cfg-options", "log.interval=1"]
        ours_test = [sys.executable, "-m", "ignite_cls", "test", str(config)]
        ours_test += [f"ours/epoch_{epochs}.pt", "--work-dir", "ours_test"]
        plain_train = [sys.executable, str(PLAIN_SCRIPT), "train", str(spec)]
        plain_test = [*plain_train[:2], "test", str(spec), f"plain/epoch_{epochs}.pt"]
        runs = {
            "train": (ours_train, root / "ours", plain_train),
            "test": (ours_test, root / "ours_test", plain_test),
        }
        figures: dict[str, float] = {}
        for command, (ours, ours_logs, plain) in runs.items():

            def run_ours(ours=ours, ours_logs=ours_logs, command=command) -> dict:
                return timed(ours, root, ours_logs, OURS[command])

            def run_plain(plain=plain, command=command) -> dict:
                return timed(plain, root, root / "plain", PLAIN[command])

            run_ours(), run_plain()  # unmeasured: the store is created, the caches warm
            figures |= _pairs(command, run_ours, run_plain, repeats)
    return figures


def _pairs(command: str, ours, plain, repeats: int) -> dict[str, float]:
    results: dict[str, list[dict]] = {"ours": [], "plain": []}
    for repeat in range(repeats):
        order = ["ours", "plain"] if repeat % 2 == 0 else ["plain", "ours"]
        for name in order:
            results[name].append((ours if name == "ours" else plain)())
    figures = {}
    for name, prefix in (("ours", f"{command}_"), ("plain", f"plain_{command}_")):
        for key in results[name][0]:
            figures[prefix + key] = statistics.median(r[key] for r in results[name])
    pairs = zip(results["ours"], results["plain"], strict=True)
    figures[f"{command}_wall_ratio"] = statistics.median(
        o["wall_s"] / p["wall_s"] for o, p in pairs
    )
    return figures
