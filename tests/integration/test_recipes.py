"""The modern recipe through the command line, training with MixUp/CutMix: EMA weights
validated beside the model's, chosen by ``save_best``, used by ``test``, ``predict``'s
Classifier and the MLflow model unless told otherwise; early stopping ends the run FINISHED
with its reason, and resuming it says so. (Exact resume with EMA, MixUp/CutMix and
accumulation: test_fault_tolerance.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import QUICKSTART, ok, run_cli

from ignite_cls.inference import Classifier

pytestmark = pytest.mark.integration

RECIPE = [  # the quickstart's ResNet-18, which learns the digits within two epochs
    "schedule.max_epochs=4",
    "ema.enabled=True",  # momentum 0.0002: after 44 steps the average is near the start
    "checkpoint.save_best=ema/accuracy/top1",
    # no validation loss improves by 100: the run stops after the second validation
    "schedule.early_stop.metric=loss",
    "schedule.early_stop.patience=1",
    "schedule.early_stop.min_delta=100",
]
EARLY_STOP = "stopped early at epoch 2: val/loss did not improve by more than 100 in 1 validations"


# MixUp and CutMix train on soft targets; validation's metrics take the hard labels
MIXED = f"""_base_ = [{QUICKSTART!r}]
data = dict(batch_augments=[dict(type="MixUp", alpha=0.2), dict(type="CutMix", alpha=1.0)])
"""


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A tracked run that stops early at epoch 2 of 4; its folder (MLflow store, work dir,
    the config ``mixed.py``)."""
    folder = tmp_path_factory.mktemp("recipe")
    (folder / "mixed.py").write_text(MIXED)
    result = run_cli(
        "train", folder / "mixed.py", "--work-dir", folder / "work", "--cfg-options", *RECIPE,
        cwd=folder, tracked=True,
    )  # fmt: skip
    ok(result)
    return folder


def val_metrics(work: Path, epoch: int) -> dict[str, float]:
    """The metrics of the ``epoch val:`` line of the training log."""
    log = "".join(p.read_text() for p in work.glob("train_*.log"))
    line = re.search(rf"epoch {epoch} val: (.*)", log).group(1)
    return {name: float(value) for name, value in re.findall(r"(\S+) (-?[\d.]+)", line)}


def test_early_stop_ends_the_run_finished_with_its_reason(stopped):
    from mlflow import MlflowClient

    work = stopped / "work"
    assert EARLY_STOP in "".join(p.read_text() for p in work.glob("train_*.log"))
    assert sorted(p.name for p in work.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_2.pt"]
    (best,) = work.glob("best_*.pt")
    assert best.name.startswith("best_ema_accuracy_top1_epoch_")
    client = MlflowClient(f"sqlite:///{stopped / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mixed").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["ignite_cls.early_stop"].startswith(EARLY_STOP)
    history = client.get_metric_history(run.info.run_id, "val/ema/accuracy/top1")
    assert [m.step for m in history] == [1, 2]
    assert run.data.params["ema.enabled"] == "True"
    assert "CutMix" in run.data.params["data.batch_augments"]


def test_resuming_a_stopped_run_says_so_and_trains_no_more(stopped, tmp_path):
    work = stopped / "work"
    result = ok(
        run_cli(
            "train", stopped / "mixed.py", "--work-dir", work, "--resume", "--cfg-options",
            *RECIPE, cwd=tmp_path,
        )
    )  # fmt: skip
    assert f"nothing to train: this run {EARLY_STOP}" in result.stderr
    assert not (work / "epoch_3.pt").exists()


def test_test_uses_the_ema_weights_unless_told_otherwise(stopped, tmp_path):
    work = stopped / "work"
    validated = val_metrics(work, 2)
    raw, ema = validated["accuracy/top1"], validated["ema/accuracy/top1"]
    assert abs(raw - ema) > 5, "the averaged and the trained weights must tell apart"
    for extra, weights, expected in (
        ([], "ema_model", ema),
        (["--cfg-options", "ema.use_for_inference=False"], "model", raw),
    ):
        out = tmp_path / f"{weights}.json"
        args = ["test", QUICKSTART, work / "epoch_2.pt", "--work-dir", tmp_path / weights]
        result = ok(run_cli(*args, "--out", out, "--out-item", "metrics", *extra, cwd=tmp_path))
        assert f"({weights} weights)" in result.stderr
        assert json.loads(out.read_text())["accuracy/top1"] == pytest.approx(expected, abs=0.01)


def test_the_classifier_and_the_mlflow_model_hold_the_ema_weights(stopped):
    (best,) = (stopped / "work").glob("best_*.pt")
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)

    def same(state: dict, expected: dict) -> bool:
        return all(torch.equal(state[k].cpu(), v) for k, v in expected.items())

    averaged = Classifier.from_checkpoint(best, device="cpu").model.state_dict()
    assert same(averaged, checkpoint["ema_model"])
    assert not same(averaged, checkpoint["model"])
    cfg = {**checkpoint["run_state"]["config"], "ema": {"use_for_inference": False}}
    trained = Classifier.from_checkpoint(best, config=cfg, device="cpu").model.state_dict()
    assert same(trained, checkpoint["model"])
    (served,) = [p for p in stopped.rglob("model.pt") if "work" not in p.parts]
    logged = torch.load(served, map_location="cpu", weights_only=True)["model"]
    assert same(logged, checkpoint["ema_model"])
