"""benchmarks/gpu_check.py --quick: every step of the GPU check runs, tiny, on the CPU and
writes its figures, so the script cannot rot between the runs on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, cpu_env

pytestmark = pytest.mark.integration


def test_the_gpu_check_runs_every_step_in_quick_mode(cifar10_subset, tmp_path):
    out = tmp_path / "quick.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--cifar-root",
         str(cifar10_subset(20, 10)), "--json", str(out), "--folder", str(tmp_path / "runs")],
        cwd=tmp_path, env=cpu_env(), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick (CPU)" and report["gpu"] == "none (CPU)"
    figures = report["figures"]
    steps = ["quickstart", "amp", "launchers", "fast", "benchmark", "layout"]
    assert list(figures["seconds"]) == [f"step_{name}" for name in steps]
    quickstart = figures["quickstart"]
    assert quickstart["device_cpu_agreement"] == 1.0  # the same device twice here
    assert 0 <= quickstart["test_top1"] <= 100
    assert figures["amp"]["float16"] == {"refused_on_cpu": True}
    assert figures["amp"]["bfloat16"]["loss_finite"] is True
    launchers = figures["launchers"]
    assert launchers["backend"] == "gloo"
    assert launchers["spawned_top1"] == launchers["torchrun_top1"] == quickstart["test_top1"]
    assert set(figures["fast"]) == {"24_epochs", "64_epochs"}
    assert all(run["train_wall_s"] > 0 for run in figures["fast"].values())
    bench = figures["benchmark"]
    assert bench["resident_over_model_step"] == pytest.approx(
        bench["resident_train_img_s"] / bench["model_step_img_s"]
    )
    assert bench["data_ratio"] > 0
    assert set(figures["layout"]) == {"channels_last_off", "channels_last_on"}
    # every target is judged (and reported), even where quick mode does not require it
    assert len(report["targets"]) == 7 and all(
        isinstance(v, bool) for v in report["targets"].values()
    )
