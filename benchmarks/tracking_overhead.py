"""What MLflow tracking costs a training run: the same training with tracking on and off.

    python benchmarks/tracking_overhead.py [--pairs 2] [--epochs 3] [--cifar-per-class 200]

For each case (the quickstart config, and a CIFAR-10 subset with a light ResNet-18) the
script trains ``--pairs`` times with ``mlflow.enabled=True`` and as often with ``False``,
alternating (on/off, off/on, ...) so that drifting machine load hits both alike. Each run
is a fresh process that runs ``ignite_cls train`` in-process, with the tracker's handlers
wrapped by a timer (they still do their real work against the real store). It reports:

- tracking time in the loop: the seconds spent in the tracker's per-iteration and
  per-epoch handlers (buffering, the per-epoch ``log_batch`` write) as a share of the
  training time (the epochs' own time plus those handlers); this is the training step's
  overhead, measured inside each run, so other processes' load does not blur it;
- step time on/off: the time between consecutive loss records of one epoch (epoch 1
  skipped: warm-up) per iteration, median over runs; the same overhead seen from outside,
  as noisy as the machine;
- one-off seconds: opening the run (params, datasets) and the end of the run (curves,
  checkpoint, model export), and the whole process's wall time on/off (MLflow's import).

Target: tracking time in the loop <= 2% of the step time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = re.compile(r"^(\S+ \S+) DEBUG epoch (\d+) iter (\d+):")
EPOCH_DONE = re.compile(r"^\S+ \S+ INFO epoch (\d+)/\d+ done in ([\d.]+)s")
IN_LOOP = ("_on_record", "_on_validated", "_on_epoch", "_on_epoch_started")
ONE_OFF = ("start", "_on_completed")
CIFAR_CONFIG = """
model = dict(arch="resnet18", num_classes=10)
data = dict(
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    train=dict(
        type="folder", root={train!r}, batch_size=64, num_workers=2,
        pipeline=[dict(type="RandomCrop", size=32, padding=4), dict(type="RandomHorizontalFlip")],
    ),
    val=dict(type="folder", root={test!r}, batch_size=200, num_workers=2),
    test=dict(type="folder", root={test!r}, batch_size=200, num_workers=2),
)
optimizer = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4)
schedule = dict(max_epochs=3, lr_policy=dict(type="cosine"))
log = dict(interval=5)
"""


def extract_cifar(archive: Path, dest: Path, per_class_train: int, per_class_test: int) -> Path:
    """The first files of each class of ``<top>/<split>/<class>/<file>``, once."""
    if dest.is_dir():
        return dest
    limits = {"train": per_class_train, "test": per_class_test}
    counts: dict[tuple[str, str], int] = {}
    partial = dest.with_name(dest.name + ".partial")
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] not in limits:
                continue
            _, split, label, name = parts
            if counts.get((split, label), 0) >= limits[split]:
                continue
            counts[(split, label)] = counts.get((split, label), 0) + 1
            out = partial / split / label / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
    partial.rename(dest)
    return dest


# ---------------------------------------------------------------- one training (child process)


def child(argv: list[str], timings_file: Path) -> None:
    """Run ``ignite_cls`` with ``argv`` here, timing the tracker's handlers into a JSON file."""
    from ignite_cls.__main__ import main
    from ignite_cls.tracking.training import TrainTracker

    spent = dict.fromkeys(IN_LOOP + ONE_OFF, 0.0)

    def timed(name: str):
        original = getattr(TrainTracker, name)

        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    for name in spent:
        setattr(TrainTracker, name, timed(name))
    code = main(argv)
    timings_file.write_text(json.dumps(spent))
    sys.exit(code)


# ---------------------------------------------------------------- measuring (parent)


def read_log(log_file: Path) -> dict[str, float]:
    """Median step time (epochs 2+) and the epochs' own time, from a training log."""
    records, epoch_seconds = [], 0.0
    for line in log_file.read_text().splitlines():
        if match := RECORD.match(line):
            when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            records.append((int(match[2]), int(match[3]), when))
        elif match := EPOCH_DONE.match(line):
            epoch_seconds += float(match[2])
    steps = [
        (t1 - t0) / (i1 - i0)
        for (e0, i0, t0), (e1, i1, t1) in itertools.pairwise(records)
        if e0 == e1 and e0 > 1
    ]
    if not steps or not epoch_seconds:
        raise SystemExit(f"{log_file}: no loss records or epoch lines to measure (log format?)")
    return {"step_s": statistics.median(steps), "epochs_s": epoch_seconds}


def train(config: Path, folder: Path, tracking: bool, epochs: int, index: int) -> dict:
    work = folder / f"run{index}_{'on' if tracking else 'off'}"
    timings = folder / f"run{index}_timings.json"
    argv = ["train", str(config), "--work-dir", str(work), "--cfg-options"]
    argv += [f"mlflow.enabled={tracking}", f"schedule.max_epochs={epochs}"]
    cmd = [sys.executable, __file__, "--child", str(timings), "--", *argv]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (log_file,) = work.glob("train_*.log")
    spent = json.loads(timings.read_text())
    measured = read_log(log_file)
    in_loop = sum(spent[name] for name in IN_LOOP)
    return {
        "tracking": tracking,
        "wall_s": wall,
        **measured,
        "in_loop_s": in_loop,
        "in_loop_share": in_loop / (measured["epochs_s"] + spent["_on_epoch"]),
        "one_off_s": sum(spent[name] for name in ONE_OFF),
    }


def summary(name: str, runs: list[dict]) -> dict:
    on = [r for r in runs if r["tracking"]]
    off = [r for r in runs if not r["tracking"]]
    result = {
        "case": name,
        "in_loop_share": statistics.median(r["in_loop_share"] for r in on),
        "in_loop_s": statistics.median(r["in_loop_s"] for r in on),
        "step_s_on": statistics.median(r["step_s"] for r in on),
        "step_s_off": statistics.median(r["step_s"] for r in off),
        "one_off_s": statistics.median(r["one_off_s"] for r in on),
        "wall_s_on": statistics.median(r["wall_s"] for r in on),
        "wall_s_off": statistics.median(r["wall_s"] for r in off),
        "runs": runs,
    }
    result["step_ratio"] = result["step_s_on"] / result["step_s_off"]
    print(
        f"{name}: tracking in the training loop {result['in_loop_s']:.3f} s = "
        f"{100 * result['in_loop_share']:.3f}% of training time; step "
        f"{1e3 * result['step_s_off']:.1f} ms off / {1e3 * result['step_s_on']:.1f} ms on "
        f"(ratio {result['step_ratio']:.3f}, machine noise included); one-off "
        f"{result['one_off_s']:.1f} s (open + end of run); process wall "
        f"{result['wall_s_off']:.0f} s off / {result['wall_s_on']:.0f} s on",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs per case")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training (>= 2)")
    parser.add_argument("--cifar-per-class", type=int, default=200, help="training images a class")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--folder", type=Path, help="where to train (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--cases", default="quickstart,cifar10", help="comma-separated")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(rest[1:] if rest[:1] == ["--"] else rest, args.child)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="tracking_overhead_"))
    folder.mkdir(parents=True, exist_ok=True)
    configs = {"quickstart": ROOT / "configs" / "quickstart.py"}
    if "cifar10" in args.cases:
        data = extract_cifar(
            args.datasets / "cifar10.tar.gz", folder / "cifar10_subset", args.cifar_per_class, 50
        )
        configs["cifar10"] = folder / "cifar10_light.py"
        configs["cifar10"].write_text(
            CIFAR_CONFIG.format(train=str(data / "train"), test=str(data / "test"))
        )
    results = []
    for name in args.cases.split(","):
        case_folder = folder / name
        case_folder.mkdir(exist_ok=True)
        runs = []
        for pair in range(args.pairs):
            for tracking in (True, False) if pair % 2 == 0 else (False, True):
                runs.append(train(configs[name], case_folder, tracking, args.epochs, len(runs)))
                print(f"  {name} run {len(runs)}: {runs[-1]}", flush=True)
        results.append(summary(name, runs))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
