"""Train and test from a config file, one process, through the real command line: the
quickstart's accuracy and work dir, real image folders (CIFAR-10, Fashion-MNIST subsets),
exact resume, checkpoints from a URL, and every --out format."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import model_weights, run_cli

from ignite_cls.config import load_config
from ignite_cls.data import DigitsDataset

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.py")
CIFAR_CONFIG = str(ROOT / "configs" / "resnet18_cifar10.py")
# An lr schedule that does not depend on max_epochs, so that a 1-epoch run resumed to 2
# epochs must reproduce a 2-epoch run exactly.
STEADY_LR = ["schedule.lr_policy.type=constant"]
VAL_LINE = re.compile(r"epoch (\d+) val: accuracy/top1 ([0-9.]+)")


@dataclass
class Run:
    """A finished command: where it ran, its work dir, its output and how long it took."""

    cwd: Path
    work_dir: Path
    result: subprocess.CompletedProcess
    seconds: float

    def log_text(self) -> str:
        (log,) = self.work_dir.glob("train_*.log")
        return log.read_text()

    def val_top1(self) -> dict[int, float]:
        """Validation top-1 by epoch, as the training log records it."""
        return {int(e): float(v) for e, v in VAL_LINE.findall(self.log_text())}

    def test_metrics(self) -> dict[str, float]:
        (found,) = self.work_dir.glob("test_*.json")
        return json.loads(found.read_text())


def run(*args, cwd: Path, env: dict | None = None, tracked: bool = False) -> Run:
    """``helpers.run_cli`` with the cache inside ``cwd``, timed."""
    env = {"IGNITE_CLS_CACHE": str(cwd / "cache"), **(env or {})}
    start = time.perf_counter()
    result = run_cli(*args, cwd=cwd, env=env, tracked=tracked)
    seconds = time.perf_counter() - start
    argv = [str(a) for a in args]
    work_dir = cwd / argv[argv.index("--work-dir") + 1] if "--work-dir" in argv else cwd
    return Run(cwd, work_dir, result, seconds)


def ok(run: Run) -> Run:
    assert run.result.returncode == 0, run.result.stderr[-4000:]
    return run


def train(
    config: str,
    cwd: Path,
    *options: str,
    resume: str | None = None,
    tracked: bool = False,
    flags: list[str] = (),
) -> Run:
    args = ["train", config, "--work-dir", "work", *flags]
    if resume is not None:
        args += ["--resume", *([resume] if resume else [])]
    return ok(run(*args, "--cfg-options", *options, cwd=cwd, tracked=tracked))


def run_test_command(config: str, checkpoint, cwd: Path, *args: str, tracked: bool = False) -> Run:
    command = ["test", config, checkpoint, "--work-dir", "work", *args]
    return ok(run(*command, cwd=cwd, tracked=tracked))


def assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = model_weights(a), model_weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} of {len(wa)} tensors differ, e.g. {different[:3]}"


def resumed_from(run: Run) -> Path:
    match = re.search(r"resumed from (\S+\.pt)", run.result.stderr)
    assert match, run.result.stderr[-3000:]
    return Path(match.group(1))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- shared training runs


@pytest.fixture(scope="module")
def quickstart_full(tmp_path_factory) -> Run:
    """The quickstart exactly as a user runs it (its whole schedule, tracked)."""
    return train(QUICKSTART, tmp_path_factory.mktemp("quickstart_full"), tracked=True)


@pytest.fixture(scope="module")
def quickstart_2ep(tmp_path_factory) -> Run:
    """Two uninterrupted epochs: checkpoints for the test command, the resume reference."""
    cwd = tmp_path_factory.mktemp("quickstart_2ep")
    return train(QUICKSTART, cwd, "schedule.max_epochs=2", *STEADY_LR)


@pytest.fixture(scope="module")
def quickstart_1ep(tmp_path_factory) -> Run:
    """The same run stopped after its first epoch."""
    cwd = tmp_path_factory.mktemp("quickstart_1ep")
    return train(QUICKSTART, cwd, "schedule.max_epochs=1", *STEADY_LR)


# ---------------------------------------------------------------- the quickstart


def test_quickstart_learns_and_testing_its_best_checkpoint_repeats_the_best_validation(
    quickstart_full, tmp_path
):
    val = quickstart_full.val_top1()
    max_epochs = load_config(QUICKSTART)["schedule"]["max_epochs"]
    assert sorted(val) == list(range(1, max_epochs + 1))
    best_epoch = max(val, key=lambda e: (val[e], -e))  # the first epoch with the best score
    (best,) = quickstart_full.work_dir.glob("best_*.pt")
    assert best.name == f"best_accuracy_top1_epoch_{best_epoch}.pt"

    tested = run_test_command(QUICKSTART, best, tmp_path, tracked=True)
    top1 = tested.test_metrics()["accuracy/top1"]
    assert top1 >= 95.0  # percent
    assert top1 == pytest.approx(val[best_epoch], abs=5e-3)  # the log has 2 decimals


def test_quickstart_work_dir_holds_config_log_and_pruned_checkpoints(quickstart_full):
    work = quickstart_full.work_dir
    merged = load_config(work / "quickstart.py")
    shown = run(
        "config", QUICKSTART, "--cfg-options", "work_dir=work", cwd=work.parent, tracked=True
    )  # as the tracked run had it
    assert shown.result.returncode == 0, shown.result.stderr
    (work.parent / "shown.py").write_text(shown.result.stdout)
    assert merged == load_config(work.parent / "shown.py")

    max_epochs, keep = merged["schedule"]["max_epochs"], merged["checkpoint"]["keep"]
    periodic = sorted(p.name for p in work.glob("epoch_*.pt"))
    assert periodic == sorted(f"epoch_{e}.pt" for e in range(max_epochs - keep + 1, max_epochs + 1))
    assert len(list(work.glob("best_*.pt"))) == 1
    log = quickstart_full.log_text()
    for epoch in range(1, max_epochs + 1):
        assert f"epoch {epoch}/{max_epochs} done" in log


def test_hidden_cuda_means_cpu(quickstart_2ep):
    assert re.search(r"train: \S+ on cpu\b", quickstart_2ep.result.stderr)
    assert re.search(r"train: \S+ on cpu\b", quickstart_2ep.log_text())


def test_amp_on_the_cpu_trains_in_bfloat16_and_is_recorded(tmp_path):
    """--amp without a GPU: bfloat16 autocast (float16 is refused there: the bad-input
    table) trains, and the run records the mode. MobileNet for one epoch: bfloat16 matmuls
    are an order of magnitude slower than float32 on CPUs without native support."""
    from mlflow import MlflowClient

    options = ["model.arch=mobilenet_v3_small", "schedule.max_epochs=1", "log.interval=4"]
    trained = train(QUICKSTART, tmp_path, *options, tracked=True, flags=["--amp"])
    assert re.search(r"train: \S+ on cpu .*amp bfloat16", trained.log_text())
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run_info,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert run_info.data.params["run.amp"] == "bfloat16"
    assert run_info.info.status == "FINISHED"
    losses = [m.value for m in client.get_metric_history(run_info.info.run_id, "train/loss")]
    assert len(losses) >= 4 and all(map(math.isfinite, losses))
    assert losses[-1] < losses[0], losses  # it learns


# ---------------------------------------------------------------- real image folders


def train_and_test_folders(root: Path, cwd: Path, *options: str) -> dict[str, float]:
    roots = [
        f"data.train.root={root / 'train'}",
        f"data.val.root={root / 'test'}",
        f"data.test.root={root / 'test'}",
    ]
    trained = train(CIFAR_CONFIG, cwd, *roots, *options)
    (best,) = trained.work_dir.glob("best_*.pt")
    (cwd / "test").mkdir()
    tested = run_test_command(CIFAR_CONFIG, best, cwd / "test", "--cfg-options", *roots, *options)
    return tested.test_metrics()


# ResNet-18 with its standard stem on 32 px images (a few seconds an epoch on two CPU cores);
# without the padded crop it learns faster from a small subset in few epochs.
LIGHT_RECIPE = [
    "model.cifar_stem=False",
    "data.train.pipeline.0.padding=0",
    "data.train.batch_size=32",
    "optimizer.lr=0.05",
    "schedule.warmup_epochs=1",
    "checkpoint.keep=1",
]


def test_cifar10_subset_folders_learn(cifar10_subset, tmp_path):
    root = cifar10_subset(150, 30)
    schedule = ["schedule.max_epochs=10", "schedule.lr_policy.milestones=[8]"]
    metrics = train_and_test_folders(root, tmp_path, *LIGHT_RECIPE, *schedule)
    # chance is 10% (sd 1.7 points on 300 test images); runs here reach 33-42%
    assert metrics["accuracy/top1"] >= 25.0


# ---------------------------------------------------------------- resume


def test_resume_continues_to_bit_identical_weights(quickstart_1ep, quickstart_2ep, tmp_path):
    shutil.copytree(quickstart_1ep.work_dir, tmp_path / "work")
    resumed = train(QUICKSTART, tmp_path, "schedule.max_epochs=2", *STEADY_LR, resume="")
    assert resumed_from(resumed).name == "epoch_1.pt"
    assert_bit_identical(tmp_path / "work" / "epoch_2.pt", quickstart_2ep.work_dir / "epoch_2.pt")


def test_resume_from_an_explicit_path(quickstart_1ep, quickstart_2ep, tmp_path):
    source = quickstart_1ep.work_dir / "epoch_1.pt"
    resumed = train(QUICKSTART, tmp_path, "schedule.max_epochs=2", *STEADY_LR, resume=str(source))
    assert resumed_from(resumed) == source
    assert_bit_identical(tmp_path / "work" / "epoch_2.pt", quickstart_2ep.work_dir / "epoch_2.pt")


def test_resume_picks_the_most_progressed_checkpoint_not_the_newest_file(quickstart_2ep, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(quickstart_2ep.work_dir, work)
    later = time.time() + 3600
    os.utime(work / "epoch_1.pt", (later, later))  # the older checkpoint, touched last
    before = {p.name: sha256(p) for p in work.glob("*.pt")}

    resumed = train(QUICKSTART, tmp_path, "schedule.max_epochs=2", *STEADY_LR, resume="")
    assert resumed_from(resumed).name == "epoch_2.pt"
    assert "nothing to train" in resumed.result.stderr  # finished: not started over
    assert {p.name: sha256(p) for p in work.glob("*.pt")} == before


# ---------------------------------------------------------------- checkpoints from a URL


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requested.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server(quickstart_2ep) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serves the 2-epoch work dir on 127.0.0.1; `server.requested` lists the GET paths."""
    handler = functools.partial(CountingHandler, directory=str(quickstart_2ep.work_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_checkpoint_url_is_downloaded_once_into_the_cache(quickstart_2ep, http_server, tmp_path):
    url = f"http://127.0.0.1:{http_server.server_address[1]}/epoch_2.pt"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = run_test_command(QUICKSTART, url, tmp_path / "first")
    assert http_server.requested == ["/epoch_2.pt"]
    cached = list((tmp_path / "first" / "cache").rglob("*.pt"))
    assert [p.name for p in cached] == ["epoch_2.pt"]
    assert sha256(cached[0]) == sha256(quickstart_2ep.work_dir / "epoch_2.pt")
    assert first.test_metrics()["accuracy/top1"] == pytest.approx(
        quickstart_2ep.val_top1()[2], abs=5e-3
    )

    second = run(
        "test", QUICKSTART, url, "--work-dir", "work", cwd=tmp_path / "second",
        env={"IGNITE_CLS_CACHE": str(tmp_path / "first" / "cache")},
    )  # fmt: skip
    ok(second)
    assert http_server.requested == ["/epoch_2.pt"], "the second run used the cached file"
    assert second.test_metrics() == first.test_metrics()


# ---------------------------------------------------------------- --out


def read_records(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            row["gt_label"], row["pred_label"] = int(row["gt_label"]), int(row["pred_label"])
            row["pred_score"] = json.loads(row["pred_score"])
        return rows
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize(
    ("name", "item"),
    [("preds.pkl", None), ("preds.pickle", "pred"), ("preds.json", None), ("preds.csv", "pred")],
)
def test_out_predictions(quickstart_2ep, tmp_path, name, item):
    args = ["--out", name] + (["--out-item", item] if item else [])
    tested = run_test_command(QUICKSTART, quickstart_2ep.work_dir / "epoch_2.pt", tmp_path, *args)
    records = read_records(tmp_path / name)

    expected = DigitsDataset("test")
    classes = expected.classes
    assert [r["gt_label"] for r in records] == list(expected.targets)
    assert len({r["img_path"] for r in records}) == len(records)
    for r in records:
        scores = r["pred_score"]
        assert len(scores) == len(classes)
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert r["pred_label"] == max(range(len(scores)), key=scores.__getitem__)
        assert r["gt_class"] == classes[r["gt_label"]]
        assert r["pred_class"] == classes[r["pred_label"]]
    accuracy = 100 * sum(r["pred_label"] == r["gt_label"] for r in records) / len(records)
    assert accuracy == pytest.approx(tested.test_metrics()["accuracy/top1"], abs=1e-7)


@pytest.mark.parametrize("name", ["metrics.json", "metrics.pkl"])
def test_out_metrics(quickstart_2ep, tmp_path, name):
    args = ["--out", name, "--out-item", "metrics"]
    tested = run_test_command(QUICKSTART, quickstart_2ep.work_dir / "epoch_2.pt", tmp_path, *args)
    path = tmp_path / name
    if path.suffix == ".json":
        written = json.loads(path.read_text())
    else:
        with open(path, "rb") as f:
            written = pickle.load(f)
    assert written == pytest.approx(tested.test_metrics())
    assert {"accuracy/top1", "accuracy/top5", "precision", "recall", "f1", "loss"} <= set(written)
