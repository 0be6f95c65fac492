"""The GPU check: every GPU path of ignite_cls run for real on one GPU, with the figures its
targets are judged by, in one command and one JSON file (rerun it as a whole).

    python benchmarks/gpu_check.py --cifar-root DIR --json gpu_check.json
    python benchmarks/gpu_check.py --quick --cifar-root SUBSET --json quick.json   (CPU, tiny)

DIR holds CIFAR-10 as class folders, ``train/<class>/*`` and ``test/<class>/*``. Steps:

1. ``quickstart``: the quickstart trained on the GPU; ``test`` of its best checkpoint on the
   GPU and on the CPU agree on at least 99% of the images.
2. ``amp``: the quickstart with ``--amp`` in float16 (grad scaler, gradient clipping) and
   bfloat16: finite loss, test top-1 within one point of float32.
3. ``launchers``: ``test --nproc-per-node 1`` and ``torchrun --nproc-per-node 1 ... --launcher
   pytorch`` (nccl), the same top-1 as step 1.
4. ``fast``: ``configs/resnet18_cifar10_fast.py``: at least 90.0% test top-1 with the whole
   ``train`` command under 30 s; with ``schedule.max_epochs=64`` at least 92.0% under 90 s.
5. ``benchmark``: GPU-resident training at least 0.85x the images/s of the model step on
   synthetic device data (bf16, channels_last) in the same run; the data pipeline (folders,
   8 loader workers) at least 1.3x torchvision ``ImageFolder`` + PIL.
6. ``layout``: ``model.channels_last`` and ``model.compile`` on and off, training images/s.

``--quick`` runs the same steps tiny on the CPU (a light model, one or two epochs, few
benchmark steps; float16 is expected to be refused there and ``torch.compile`` is left out),
so that the script is exercised without a GPU; targets are reported, not required. Exit code:
1 when a target is missed (GPU mode), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.py")
FAST = str(ROOT / "configs" / "resnet18_cifar10_fast.py")
QUICK_EPOCHS = {24: 1, 64: 2}  # --quick: the fast config's two schedules, shortened


class Check:
    """Runs the commands of one check in ``folder`` and keeps the figures and targets."""

    def __init__(self, folder: Path, quick: bool, cifar_root: Path):
        self.folder = folder
        self.quick = quick
        self.cifar = cifar_root
        self.figures: dict[str, Any] = {}
        self.targets: dict[str, bool] = {}

    def run(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> float:
        """Run ``argv`` in its own folder ``name`` (an error stops the check); wall seconds."""
        cwd = self.folder / name
        cwd.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        result = subprocess.run(
            argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        (cwd / "output.txt").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"gpu_check: {name} failed (exit {result.returncode}):\n{tail}")
        return seconds

    def ignite_cls(self, name: str, *args: Any, env: dict[str, str] | None = None) -> float:
        return self.run(name, [sys.executable, "-m", "ignite_cls", *map(str, args)], env)

    def target(self, name: str, met: bool) -> None:
        self.targets[name] = bool(met)

    def quickstart_options(self) -> list[str]:
        """--cfg-options for the quickstart: as shipped on the GPU; tiny on the CPU (a light
        model, one epoch, the CIFAR subset as folders)."""
        if not self.quick:
            return []
        return [
            "model.arch=mobilenet_v3_small",
            "schedule.max_epochs=1",
            *(f"data.{s}.type=folder" for s in ("train", "val", "test")),
            f"data.train.root={self.cifar / 'train'}",
            f"data.val.root={self.cifar / 'test'}",
            f"data.test.root={self.cifar / 'test'}",
        ]

    def fast_options(self, epochs: int) -> list[str]:
        roots = [
            f"data.train.root={self.cifar / 'train'}",
            f"data.val.root={self.cifar / 'test'}",
            f"data.test.root={self.cifar / 'test'}",
        ]
        every = [f"schedule.val_interval={epochs}", f"checkpoint.interval={epochs}"]
        if not self.quick:
            return [*roots, f"schedule.max_epochs={epochs}", *every]
        # bfloat16 and the CIFAR stem are an order of magnitude slower on a CPU
        return [
            *roots,
            "amp.enabled=False",
            "model.cifar_stem=False",
            "data.train.batch_size=64",
            "data.val.batch_size=32",  # several batches: a rate needs more than one
            "data.test.batch_size=32",
            f"schedule.max_epochs={QUICK_EPOCHS.get(epochs, 1)}",
            "schedule.val_interval=1",
            "checkpoint.interval=1",
        ]


def test_metrics(work: Path) -> dict[str, float]:
    (found,) = sorted(work.glob("test_*.json"))[-1:]
    return json.loads(found.read_text())


def trained_best(work: Path) -> Path:
    (best,) = work.glob("best_*.pt")
    return best


def step_quickstart(check: Check) -> None:
    options = check.quickstart_options()
    seconds = check.ignite_cls("quickstart", "train", QUICKSTART, "--work-dir", "work",
                               "--cfg-options", *options)  # fmt: skip
    best = trained_best(check.folder / "quickstart" / "work")
    predictions = {}
    for device, env in (("device", {}), ("cpu", {"CUDA_VISIBLE_DEVICES": ""})):
        out = check.folder / "quickstart" / f"predictions_{device}.json"
        check.ignite_cls(f"quickstart_test_{device}", "test", QUICKSTART, best, "--work-dir",
                         "work", "--out", out, "--cfg-options", *options, env=env)  # fmt: skip
        predictions[device] = [r["pred_label"] for r in json.loads(out.read_text())]
    same = sum(a == b for a, b in zip(*predictions.values(), strict=True))
    metrics = test_metrics(check.folder / "quickstart_test_device" / "work")
    check.figures["quickstart"] = {
        "train_wall_s": seconds,
        "test_top1": metrics["accuracy/top1"],
        "device_cpu_agreement": same / len(predictions["cpu"]),
    }
    check.target(
        "quickstart: device and CPU agree on >= 99%", same >= 0.99 * len(predictions["cpu"])
    )


def step_amp(check: Check) -> None:
    options = check.quickstart_options()
    fp32 = check.figures["quickstart"]["test_top1"]
    figures = {}
    for dtype in ("float16", "bfloat16"):
        name = f"amp_{dtype}"
        argv = ["train", QUICKSTART, "--work-dir", "work", "--amp", "--cfg-options",
                *options, f"amp.dtype={dtype}"]  # fmt: skip
        if dtype == "float16":  # clipping unscales the scaled gradients first
            argv.append("grad.max_norm=5.0")
        if check.quick and dtype == "float16":  # refused on the CPU, in one line
            cwd = check.folder / name
            cwd.mkdir(parents=True, exist_ok=True)
            result = subprocess.run([sys.executable, "-m", "ignite_cls", *argv],
                                    cwd=cwd, capture_output=True, text=True)  # fmt: skip
            figures[dtype] = {"refused_on_cpu": result.returncode == 2}
            continue
        seconds = check.ignite_cls(name, *argv)
        best = trained_best(check.folder / name / "work")
        check.ignite_cls(f"{name}_test", "test", QUICKSTART, best, "--work-dir", "work",
                         "--cfg-options", *options)  # fmt: skip
        top1 = test_metrics(check.folder / f"{name}_test" / "work")["accuracy/top1"]
        log = "".join(p.read_text() for p in (check.folder / name / "work").glob("train_*.log"))
        losses = [float(v) for v in re.findall(r" loss ([0-9.e+-]+|nan|inf)", log)]
        finite = bool(losses) and all(v == v and abs(v) != float("inf") for v in losses)
        figures[dtype] = {"train_wall_s": seconds, "test_top1": top1, "loss_finite": finite}
        check.target(f"amp {dtype}: finite loss, top-1 within 1 point of float32",
                     finite and abs(top1 - fp32) <= 1.0)  # fmt: skip
    check.figures["amp"] = figures


def step_launchers(check: Check) -> None:
    options = check.quickstart_options()
    best = trained_best(check.folder / "quickstart" / "work")
    figures = {}
    check.ignite_cls("test_spawned", "test", QUICKSTART, best, "--work-dir", "work",
                     "--nproc-per-node", 1, "--cfg-options", *options)  # fmt: skip
    figures["spawned_top1"] = test_metrics(check.folder / "test_spawned" / "work")["accuracy/top1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
                "-m", "ignite_cls", "test", QUICKSTART, str(best), "--work-dir", "work",
                "--launcher", "pytorch", "--cfg-options", *options]  # fmt: skip
    check.run("test_torchrun", torchrun)
    figures["torchrun_top1"] = test_metrics(check.folder / "test_torchrun" / "work")[
        "accuracy/top1"
    ]
    from ignite_cls.launch import backend_name  # what every process of the launch chose

    figures["backend"] = backend_name()
    reference = check.figures["quickstart"]["test_top1"]
    check.figures["launchers"] = figures
    check.target("launchers: same top-1 as one process",
                 figures["spawned_top1"] == reference == figures["torchrun_top1"])  # fmt: skip


def step_fast(check: Check) -> None:
    figures = {}
    for epochs, accuracy, wall in ((24, 90.0, 30.0), (64, 92.0, 90.0)):
        name = f"fast_{epochs}"
        seconds = check.ignite_cls(name, "train", FAST, "--work-dir", "work", "--cfg-options",
                                   *check.fast_options(epochs))  # fmt: skip
        (final,) = sorted((check.folder / name / "work").glob("epoch_*.pt"))[-1:]
        check.ignite_cls(f"{name}_test", "test", FAST, final, "--work-dir", "work",
                         "--cfg-options", *check.fast_options(epochs))  # fmt: skip
        top1 = test_metrics(check.folder / f"{name}_test" / "work")["accuracy/top1"]
        figures[f"{epochs}_epochs"] = {"train_wall_s": seconds, "test_top1": top1}
        check.target(f"fast, {epochs} epochs: >= {accuracy}% within {wall} s",
                     top1 >= accuracy and seconds <= wall)  # fmt: skip
    check.figures["fast"] = figures


def benchmark(check: Check, name: str, *options: str) -> dict[str, float]:
    out = check.folder / name / "figures.json"
    steps = ["--steps", "2", "--repeats", "1"] if check.quick else ["--steps", "30"]
    check.ignite_cls(name, "benchmark", FAST, *steps, "--command-repeats", 0, "--json", out,
                     "--cfg-options", *check.fast_options(1), *options)  # fmt: skip
    return json.loads(out.read_text())


def step_benchmark(check: Check) -> None:
    resident = benchmark(check, "benchmark_resident")
    folders = benchmark(check, "benchmark_folders", "data.gpu_resident=False",
                        "data.train.num_workers=8" if not check.quick else "data.train.num_workers=2")  # fmt: skip
    ratio = resident["train_img_s"] / resident["model_img_s"]
    check.figures["benchmark"] = {
        "resident_train_img_s": resident["train_img_s"],
        "model_step_img_s": resident["model_img_s"],
        "resident_over_model_step": ratio,
        "data_img_s": folders["data_img_s"],
        "torchvision_data_img_s": folders["torchvision_data_img_s"],
        "data_ratio": folders["data_ratio"],
    }
    check.target("GPU-resident training >= 0.85x the model step", ratio >= 0.85)
    check.target("data pipeline >= 1.3x ImageFolder + PIL", folders["data_ratio"] >= 1.3)


def step_layout(check: Check) -> None:
    """Training images/s with each switch flipped against the fast config as shipped
    (channels_last on, compile off: step 5's run)."""
    variants = {"channels_last_off": ["model.channels_last=False"]}
    if not check.quick:  # inductor on a CPU: minutes of compiling for a tiny run
        variants["compile_on"] = ["model.compile=True"]
    check.figures["layout"] = {
        "channels_last_on": check.figures["benchmark"]["resident_train_img_s"],
        **{
            name: benchmark(check, f"layout_{name}", *options)["train_img_s"]
            for name, options in variants.items()
        },
    }


def machine() -> dict[str, str]:
    import torch

    facts = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["cuda"] = str(torch.version.cuda)
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        try:
            facts["driver"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
        except OSError:
            facts["driver"] = "?"
    else:
        facts["gpu"] = "none (CPU)"
    return facts


STEPS = [step_quickstart, step_amp, step_launchers, step_fast, step_benchmark, step_layout]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar-root", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--quick", action="store_true", help="the same steps, tiny, on the CPU")
    parser.add_argument("--folder", type=Path, help="where the runs go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    check = Check(folder.resolve(), args.quick, args.cifar_root.resolve())
    report: dict[str, Any] = {"mode": "quick (CPU)" if args.quick else "GPU", **machine()}
    for step in STEPS:
        start = time.perf_counter()
        step(check)
        check.figures.setdefault("seconds", {})[step.__name__] = time.perf_counter() - start
        print(f"{step.__name__}: done in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    report |= {"figures": check.figures, "targets": check.targets, "folder": str(folder)}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    for name, met in check.targets.items():
        print(f"{'met   ' if met else 'MISSED'} {name}", file=sys.stderr)
    return 0 if args.quick or all(check.targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
