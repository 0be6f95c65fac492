"""`python -m ignite_cls benchmark` on real CIFAR-10 images: every figure the speed targets are
judged by is measured, written to --json and reported with its ratio, the whole train and
test commands against benchmarks/plain.py included. Speeds themselves are not asserted here
(they are the benchmark's output, not a test's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CIFAR_CONFIG = str(ROOT / "configs" / "resnet18_cifar10.py")
FIGURES = [
    "data_img_s",
    "torchvision_data_img_s",
    "model_img_s",
    "train_img_s",
    "plain_train_img_s",
    "test_img_s",
    "plain_test_img_s",
    "help_s",
    "import_torch_s",
]
TIMES = ["wall_s", "first_iter_s", "last_iter_to_exit_s", "last_line_to_exit_s"]
FIGURES += [f"{who}train_{t}" for who in ("", "plain_") for t in TIMES]
FIGURES += [f"{who}test_{t}" for who in ("", "plain_") for t in ("wall_s", "last_line_to_exit_s")]
RATIOS = {"train_ratio": "training:", "test_ratio": "test:", "data_ratio": "data:"}
RATIOS |= {"startup_ratio": "start-up:", "train_wall_ratio": "whole train command:"}
RATIOS["test_wall_ratio"] = "whole test command:"


def test_benchmark_measures_every_figure_and_ratio(cifar10_subset, tmp_path):
    root = cifar10_subset(20, 10)
    out = tmp_path / "figures.json"
    result = run_cli(
        "benchmark",
        CIFAR_CONFIG,
        "--steps",
        "4",
        "--repeats",
        "1",
        "--command-repeats",
        "1",
        "--json",
        out,
        "--cfg-options",
        "model.arch=mobilenet_v3_small",
        "model.cifar_stem=False",
        "schedule.max_epochs=1",
        f"data.train.root={root / 'train'}",
        f"data.val.root={root / 'test'}",
        f"data.test.root={root / 'test'}",
        "data.train.num_workers=1",
        "data.val.num_workers=1",
        "data.test.num_workers=1",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert sorted(figures) == sorted(FIGURES + list(RATIOS))
    assert all(value > 0 for value in figures.values()), figures
    report = result.stdout.splitlines()
    for name in FIGURES:
        (row,) = [line for line in report if line.split()[:1] == [name]]
        assert float(row.split()[1]) == pytest.approx(figures[name], abs=0.01)
    printed = {line.split(":")[0] + ":": line.split()[-1] for line in report if ":" in line}
    assert printed == {label: f"{figures[key]:.3f}x" for key, label in RATIOS.items()}
    # one repeat: each ratio is that repeat's pair of measurements
    assert figures["train_ratio"] == pytest.approx(
        figures["train_img_s"] / figures["plain_train_img_s"]
    )
    assert figures["startup_ratio"] == pytest.approx(figures["import_torch_s"] / figures["help_s"])
    for command in ("train", "plain_train"):  # the parts lie inside the whole
        assert figures[f"{command}_first_iter_s"] < figures[f"{command}_wall_s"]
        assert figures[f"{command}_last_iter_to_exit_s"] < figures[f"{command}_wall_s"]
        assert (
            figures[f"{command}_last_line_to_exit_s"] <= figures[f"{command}_last_iter_to_exit_s"]
        )
    assert figures["train_wall_ratio"] == pytest.approx(
        figures["train_wall_s"] / figures["plain_train_wall_s"]
    )
    # the work dir is not touched: a benchmark writes no checkpoints or runs
    assert not list(tmp_path.rglob("*.pt")) and not (tmp_path / "runs").exists()
    assert not (tmp_path / "mlflow.db").exists()
