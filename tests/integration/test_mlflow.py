"""Every run is an MLflow run: the default sqlite store, a real tracking server, a plain
`mlflow ui`, resume into the same run, and FAILED / KILLED endings. Real CLI processes, real
MLflow processes, real data."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from helpers import cli, cpu_env, free_port, ok, run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.py"
MLFLOW_CLI = [sys.executable, "-m", "mlflow"]
TRAIN_METRICS = {"train/loss", "train/lr", "train/throughput", "train/epoch_time"}
VAL_METRICS = {f"val/{m}" for m in ("accuracy/top1", "accuracy/top5", "precision", "recall")}
VAL_METRICS |= {"val/f1", "val/loss"}
TEST_METRICS = {m.replace("val/", "test/") for m in VAL_METRICS}
TINY_CONFIG = """
model = dict(arch="mobilenet_v3_small", num_classes=10)
data = dict(
    mean=[125.3, 123.0, 113.9],
    std=[51.6, 50.8, 51.3],
    train=dict(type="folder", root={train!r}, batch_size=20, num_workers=0),
    val=dict(type="folder", root={test!r}, batch_size=40, num_workers=0),
    test=dict(type="folder", root={test!r}, batch_size=40, num_workers=0),
)
optimizer = dict(type="SGD", lr=0.01, momentum=0.9)
schedule = dict(max_epochs=1)
log = dict(interval=1)
"""


def client_for(folder: Path, db_name: str = "mlflow.db"):
    from mlflow import MlflowClient

    db = folder / db_name
    assert db.is_file(), f"no MLflow database {db_name} in {folder}: {sorted(os.listdir(folder))}"
    return MlflowClient(f"sqlite:///{db}")


def runs_of(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([found.experiment_id])


def steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def rest(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], object], what: str, timeout: float = 600, procs=()) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{what}: process {proc.args[:4]} ended early ({proc.returncode})")
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.contextmanager
def mlflow_service(args: list[str], cwd: Path, log: Path) -> Iterator[str]:
    """`mlflow ui` / `mlflow server` on a free local port in its own process group."""
    port = free_port()
    cmd = [*MLFLOW_CLI, *args, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=cpu_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, f"{args[0]} on port {port} ({log.read_text()[-2000:]})", 300, [proc])
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rest_runs(url: str, experiment: str) -> list[dict]:
    found = rest(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
    body = {"experiment_ids": [found["experiment"]["experiment_id"]]}
    return rest(f"{url}/api/2.0/mlflow/runs/search", body).get("runs", [])


@pytest.fixture(scope="module")
def tiny_config(cifar10_subset, tmp_path_factory) -> Path:
    """A small CIFAR-10 folder config: 100 training images (5 iterations), a light model."""
    root = cifar10_subset(10, 4)
    path = tmp_path_factory.mktemp("tiny") / "tiny.py"
    path.write_text(TINY_CONFIG.format(train=str(root / "train"), test=str(root / "test")))
    return path


# ---------------------------------------------------------------- store and params rules


def test_store_choice_params_and_status_rules(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ignite_cls.errors import Interrupted
    from ignite_cls.tracking.records import PARAM_KEY_LIMIT, PARAM_VALUE_LIMIT, param_entries
    from ignite_cls.tracking.run import run_status
    from ignite_cls.tracking.store import resolve_tracking_uri, view_hint

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = {"mlflow": {"tracking_uri": None}}
    assert resolve_tracking_uri(cfg) == (f"sqlite:///{tmp_path}/mlflow.db", "default")
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    assert resolve_tracking_uri(cfg) == (f"sqlite:///{tmp_path}/mlflow.db", "fallback")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(cfg) == ("http://127.0.0.1:5999", "env")
    cfg["mlflow"]["tracking_uri"] = "sqlite:///elsewhere.db"
    assert resolve_tracking_uri(cfg) == ("sqlite:///elsewhere.db", "config")
    assert view_hint("sqlite:///elsewhere.db", "config") == (
        "mlflow ui --backend-store-uri sqlite:///elsewhere.db"
    )

    long_key = "k" * (PARAM_KEY_LIMIT + 50)
    entries = param_entries({"data.pipeline": "x" * 10_000, "a b(c)": [1, 2], long_key: None})
    assert len(entries["data.pipeline"]) == PARAM_VALUE_LIMIT
    assert entries["data.pipeline"].endswith("...")
    assert entries["a b_c_"] == "[1, 2]" and entries["k" * PARAM_KEY_LIMIT] == "None"
    # the limits are MLflow's own: a real store takes them, rejects a longer key and cuts a
    # longer value to the same length (with a warning of its own, which ours avoids)
    client = MlflowClient(f"sqlite:///{tmp_path}/limits.db")
    run_id = client.create_run(client.create_experiment("limits")).info.run_id
    for key, value in entries.items():
        client.log_param(run_id, key, value)
    client.log_param(run_id, "too_long", "x" * (PARAM_VALUE_LIMIT + 1))
    assert len(client.get_run(run_id).data.params["too_long"]) == PARAM_VALUE_LIMIT
    with pytest.raises(MlflowException):
        client.log_param(run_id, "k" * (PARAM_KEY_LIMIT + 1), "x")

    assert run_status(None) == "FINISHED"
    assert run_status(ValueError("bad")) == "FAILED"
    assert run_status(KeyboardInterrupt()) == "KILLED"
    assert run_status(Interrupted(15, 7, None)) == "KILLED"


# ---------------------------------------------------------------- the default store


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> dict:
    """A quickstart train (2 epochs) and a test of its best checkpoint, run in a folder that
    is a git repository and has no MLflow setting: MLflow's default store applies."""
    folder = tmp_path_factory.mktemp("quickstart")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    (folder / "notes.txt").write_text("experiments\n")
    subprocess.run([*git, "add", "notes.txt"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], cwd=folder, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()
    train = run_cli(
        "train", QUICKSTART, "--work-dir", "work", "--cfg-options", "schedule.max_epochs=2",
        cwd=folder, tracked=True,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    best = next((folder / "work").glob("best_*.pt"))
    args = ["test", QUICKSTART, best, "--work-dir", "work", "--out", "preds.json"]
    test = run_cli(*args, cwd=folder, tracked=True)
    assert test.returncode == 0, test.stderr[-3000:]
    client = client_for(folder)
    runs = {r.data.tags["ignite_cls.command"]: r for r in runs_of(client, "quickstart")}
    assert sorted(runs) == ["test", "train"]
    return dict(
        folder=folder, client=client, commit=commit, best=best, train=runs["train"],
        test=runs["test"], train_stderr=train.stderr,
    )  # fmt: skip


def test_train_run_params_and_tags(quickstart):
    from ignite_cls.config import flatten, load_config
    from ignite_cls.data import DigitsDataset

    run = quickstart["train"]
    params, tags = run.data.params, run.data.tags
    assert run.info.status == "FINISHED"
    merged = load_config(quickstart["folder"] / "work" / "quickstart.py")
    missing = set(flatten(merged)) - set(params)
    assert not missing, f"config keys not logged as params: {sorted(missing)}"
    assert params["optimizer.lr"] == "0.05"
    assert params["model.arch"] == "resnet18"
    assert params["schedule.max_epochs"] == "2"
    assert params["data.mean"] == "[127.5, 127.5, 127.5]"
    assert params["cli.work_dir"] == "work"
    assert params["cli.auto_scale_lr"] == "False"
    assert params["run.effective_lr"] == "0.05"
    assert params["run.world_size"] == "1"
    assert params["run.device"] == "cpu"
    assert params["run.amp"] == "off"
    assert params["dataset.train.size"] == str(len(DigitsDataset("train")))
    assert params["dataset.val.size"] == str(len(DigitsDataset("test")))
    assert params["dataset.num_classes"] == "10"
    for name, dist in (("torch", "torch"), ("pytorch_ignite", "pytorch-ignite")):
        assert params[f"version.{name}"] == importlib.metadata.version(dist)
    for name in ("torchvision", "ignite_cls"):
        assert params[f"version.{name}"] not in ("", "unknown")
    assert tags["ignite_cls.command"] == "train"
    assert tags["ignite_cls.config"] == str(QUICKSTART)
    assert tags["ignite_cls.launcher"] == "none"
    assert tags["mlflow.source.git.commit"] == quickstart["commit"]
    assert run.info.run_name.startswith("quickstart-train-")
    assert "view with: mlflow ui" in quickstart["train_stderr"]


def test_train_run_metrics_are_batched_histories(quickstart):
    client, run = quickstart["client"], quickstart["train"]
    run_id = run.info.run_id
    assert set(run.data.metrics) == TRAIN_METRICS | VAL_METRICS
    epoch_length = int(run.data.params["dataset.train.size"]) // 64
    every = min(10, epoch_length)
    logged_steps = list(range(every, 2 * epoch_length + 1, every))
    for key in ("train/loss", "train/lr", "train/throughput"):
        assert steps(client, run_id, key) == logged_steps, key
    for key in {"train/epoch_time"} | VAL_METRICS:
        assert steps(client, run_id, key) == [1, 2], key
    accuracy = [m.value for m in client.get_metric_history(run_id, "val/accuracy/top1")]
    assert all(0.0 <= a <= 100.0 for a in accuracy) and accuracy[-1] > 50.0  # percent


def test_train_run_artifacts_and_dataset(quickstart):
    client, run, best = quickstart["client"], quickstart["train"], quickstart["best"]
    paths = artifact_paths(client, run.info.run_id)
    assert "config/quickstart.py" in paths
    assert any(re.fullmatch(r"logs/train_\d+_\d+\.log", p) for p in paths), paths
    assert f"checkpoints/{best.name}" in paths
    stored = Path(urllib.parse.urlparse(run.info.artifact_uri).path) / "checkpoints" / best.name
    assert stored.stat().st_ino == best.stat().st_ino  # a hard link, nothing copied
    assert "plots/training_curves.png" in paths
    local = client.download_artifacts(run.info.run_id, "plots/training_curves.png")
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    inputs = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["training", "validation"]
    profile = json.loads(inputs["training"].profile)
    assert profile == {"num_samples": int(run.data.params["dataset.train.size"]), "num_classes": 10}
    assert inputs["training"].name == "digits/train" and inputs["training"].digest


def test_logged_model_predicts_like_the_best_checkpoint(quickstart, monkeypatch):
    """The logged model takes image file bytes and answers as `test` of the best checkpoint
    did (its --out records); its torch module gives the same classes."""
    import mlflow
    import pandas as pd
    from mlflow.models import get_model_info

    from ignite_cls.data import DigitsDataset
    from ignite_cls.visualize.png import png_bytes

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{quickstart['folder']}/mlflow.db")
    uri = f"runs:/{quickstart['train'].info.run_id}/model"
    info = get_model_info(uri)
    assert info.signature.inputs.to_dict() == [
        {"type": "binary", "name": "image", "required": True}
    ]
    assert info.metadata["classes"] == [str(i) for i in range(10)]
    assert info.metadata["weights"] == quickstart["best"].name
    assert info.saved_input_example_info is not None  # an image, as a request would carry it

    tested = json.loads((quickstart["folder"] / "preds.json").read_text())[:40]
    digits = DigitsDataset("test")
    images = [png_bytes(digits.load_rgb(i)) for i in range(len(tested))]
    model = mlflow.pyfunc.load_model(uri)
    answers = model.predict(pd.DataFrame({"image": images}), params={"topk": 3})
    assert answers["index"].tolist() == [t["pred_label"] for t in tested]
    scores = [t["pred_score"][t["pred_label"]] for t in tested]
    assert answers["score"].tolist() == pytest.approx(scores, abs=1e-6)
    assert all(len(k) == 3 for k in answers["topk_classes"])

    classifier = model.unwrap_python_model().classifier
    pixels = torch.stack([classifier.preprocess(digits.load_rgb(i)) for i in range(len(tested))])
    with torch.no_grad():
        logits = classifier.torch_module()(pixels.float())
    assert logits.argmax(1).tolist() == answers["index"].tolist()


def test_test_run_records_checkpoint_metrics_and_tables(quickstart):
    from ignite_cls.checkpoint_io import sha256_of

    client, run = quickstart["client"], quickstart["test"]
    params, tags = run.data.params, run.data.tags
    assert run.info.status == "FINISHED"
    assert params["cli.checkpoint"] == str(quickstart["best"])
    assert params["run.checkpoint_sha256"] == sha256_of(quickstart["best"])
    assert params["optimizer.lr"] == "0.05" and params["cli.out"] == "preds.json"
    assert tags["ignite_cls.train_run_id"] == quickstart["train"].info.run_id
    assert tags["ignite_cls.command"] == "test"
    assert set(run.data.metrics) == TEST_METRICS
    paths = artifact_paths(client, run.info.run_id)
    expected = {"metrics/test_metrics.json", "metrics/per_class.csv"}
    expected |= {"plots/confusion_matrix.png", "outputs/preds.json", "config/quickstart.py"}
    assert expected <= paths, paths
    written = json.loads(next((quickstart["folder"] / "work").glob("test_*.json")).read_text())
    logged_file = client.download_artifacts(run.info.run_id, "metrics/test_metrics.json")
    logged = json.loads(Path(logged_file).read_text())
    assert logged == pytest.approx(written)
    assert {f"test/{k}": v for k, v in written.items()} == pytest.approx(run.data.metrics)
    table = Path(client.download_artifacts(run.info.run_id, "metrics/per_class.csv")).read_text()
    rows = [line.split(",") for line in table.splitlines()]
    assert rows[0] == ["class", "precision", "recall", "f1", "support"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(10)]
    assert sum(int(r[4]) for r in rows[1:]) == int(params["dataset.test.size"])
    recalls = [float(r[2]) for r in rows[1:]]  # percent, like the test metrics
    assert sum(recalls) / len(recalls) == pytest.approx(written["recall"], abs=1e-3)


def test_plain_mlflow_ui_in_the_training_folder_lists_the_runs(quickstart, tmp_path):
    folder = quickstart["folder"]
    with mlflow_service(["ui"], folder, tmp_path / "ui.log") as url:
        listed = {r["info"]["run_id"]: r["info"]["status"] for r in rest_runs(url, "quickstart")}
    ids = {quickstart["train"].info.run_id, quickstart["test"].info.run_id}
    assert listed == dict.fromkeys(ids, "FINISHED")


# ---------------------------------------------------------------- a tracking server


def test_runs_reach_a_tracking_server_through_the_environment(tiny_config, tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    work = tmp_path / "project"
    work.mkdir()
    args = ["server", "--backend-store-uri", f"sqlite:///{server}/mlflow.db"]
    args += ["--artifacts-destination", str(server / "artifacts")]
    with mlflow_service(args, server, tmp_path / "server.log") as url:
        options = ["--cfg-options", "schedule.max_epochs=2"]
        env = {"MLFLOW_TRACKING_URI": url}
        result = run_cli("train", tiny_config, *options, cwd=work, env=env, tracked=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"view with: {url}" in result.stderr
        (found,) = rest_runs(url, "tiny")
        run_id = found["info"]["run_id"]
        listed = rest(f"{url}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=plots")
    assert found["info"]["status"] == "FINISHED"
    metrics = {m["key"] for m in found["data"]["metrics"]}
    assert metrics == TRAIN_METRICS | VAL_METRICS
    params = {p["key"]: p["value"] for p in found["data"]["params"]}
    assert params["model.arch"] == "mobilenet_v3_small"
    assert [f["path"] for f in listed["files"]] == ["plots/training_curves.png"]
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()
    # 10 iterations with 3 metrics each: batched, they take far fewer requests
    requests = (tmp_path / "server.log").read_text().count("/api/2.0/mlflow/runs/log-batch")
    assert 0 < requests < 10


# ---------------------------------------------------------------- lifecycle


def test_killed_runs_end_killed_and_resume_continues_the_same_run(tiny_config, tmp_path):
    """Two trainings start at once in a fresh folder (both create the store); SIGTERM ends
    one KILLED, Ctrl-C the other; --resume continues the first run to FINISHED."""
    long = ["--cfg-options", "schedule.max_epochs=100"]
    procs = {}
    for name in ("term", "int"):
        with open(tmp_path / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen(
                cli("train", tiny_config, "--work-dir", name, *long), cwd=tmp_path,
                env=cpu_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )  # fmt: skip
    try:

        def both_recording() -> bool:
            logs = [list((tmp_path / name).glob("train_*.log")) for name in procs]
            return all(found and "mlflow: recording run" in found[0].read_text() for found in logs)

        wait_for(both_recording, "both runs to open", procs=procs.values())
        client = client_for(tmp_path)  # the store exists now: the trainings created it

        def both_validated() -> bool:
            runs = runs_of(client, "tiny")
            return len(runs) == 2 and all("val/loss" in r.data.metrics for r in runs)

        wait_for(both_validated, "both trainings to validate epoch 1", procs=procs.values())
        procs["term"].send_signal(signal.SIGTERM)
        procs["int"].send_signal(signal.SIGINT)
        codes = {name: proc.wait(timeout=300) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert codes == {"term": 128 + signal.SIGTERM, "int": 128 + signal.SIGINT}

    runs = {Path(r.data.params["work_dir"]).name: r for r in runs_of(client, "tiny")}
    assert sorted(runs) == ["int", "term"]
    assert {name: r.info.status for name, r in runs.items()} == {"int": "KILLED", "term": "KILLED"}
    stopped = re.search(r"at iteration (\d+)", (tmp_path / "term.err").read_text())
    assert stopped, (tmp_path / "term.err").read_text()[-2000:]
    epochs = int(stopped.group(1)) // 5 + 1  # 5 iterations an epoch: finish the stopped one
    resumed = run_cli(
        "train", tiny_config, "--work-dir", "term", "--resume", "--cfg-options",
        f"schedule.max_epochs={epochs}", cwd=tmp_path, tracked=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing run" in resumed.stderr

    runs_now = runs_of(client, "tiny")
    assert len(runs_now) == 2
    run_id = runs["term"].info.run_id
    final = client.get_run(run_id)
    assert final.info.status == "FINISHED"
    assert final.data.params["schedule.max_epochs"] == "100"  # first value kept
    assert "ignite_cls.error" not in final.data.tags  # the stop's error went with it
    assert "SIGINT" in runs["int"].data.tags["ignite_cls.error"]
    changes = final.data.tags["ignite_cls.changed_on_resume"]
    assert f"schedule.max_epochs: 100 -> {epochs}" in changes
    assert steps(client, run_id, "val/accuracy/top1") == list(range(1, epochs + 1))
    loss_steps = steps(client, run_id, "train/loss")
    assert loss_steps == sorted(set(loss_steps)), "history restarted or duplicated"
    assert loss_steps[-1] == epochs * 5 and len(loss_steps) >= epochs * 5 - 1


def agents_in(folder: Path) -> list[int]:
    """The tracking agent processes working in ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"ignite_cls.tracking.agent" in cmdline and Path(cwd) == folder:
            found.append(int(proc.name))
    return found


def test_a_killed_command_leaves_its_run_killed_and_resume_completes_it(
    tiny_config, tmp_path, monkeypatch
):
    """SIGKILL, no chance to close the run: the tracking agent ends it KILLED with what had
    arrived, and goes; --resume continues the same run and records what was missing."""
    args = ["train", tiny_config, "--work-dir", "work", "--cfg-options", "schedule.max_epochs=50"]
    proc = subprocess.Popen(
        cli(*args), cwd=tmp_path, env=cpu_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:

        def recording() -> bool:  # the agent has made the store: opening it races no one
            logs = (tmp_path / "work").glob("train_*.log")
            return any("mlflow: recording run" in log.read_text() for log in logs)

        def validated_twice() -> bool:
            runs = runs_of(client_for(tmp_path), "tiny")
            return len(steps(client_for(tmp_path), runs[0].info.run_id, "val/loss")) >= 2

        wait_for(recording, "the run to open", procs=[proc])
        wait_for(validated_twice, "two validations recorded", procs=[proc])
        assert agents_in(tmp_path), "the command works with a tracking agent"
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    client = client_for(tmp_path)
    wait_for(lambda: runs_of(client, "tiny")[0].info.status != "RUNNING", "the run to end", 60)
    (killed,) = runs_of(client, "tiny")
    assert killed.info.status == "KILLED"
    assert "stopped without closing the run" in killed.data.tags["ignite_cls.error"]
    wait_for(lambda: not agents_in(tmp_path), "the agent to exit", 60)
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises((MlflowException, OSError)):
        get_model_info(f"runs:/{killed.info.run_id}/model")  # the end never came

    resume = ["train", tiny_config, "--work-dir", "work", "--resume", "--cfg-options"]
    epochs = max(steps(client, killed.info.run_id, "val/loss")) + 1
    resumed = run_cli(*resume, f"schedule.max_epochs={epochs}", cwd=tmp_path, tracked=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = runs_of(client, "tiny")
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "val/loss") == list(range(1, epochs + 1))
    paths = artifact_paths(client, run.info.run_id)
    assert "plots/training_curves.png" in paths and any(p.startswith("checkpoints/") for p in paths)
    assert len(get_model_info(f"runs:/{run.info.run_id}/model").metadata["classes"]) == 10


def test_resuming_from_an_older_checkpoint_records_each_step_once(tiny_config, tmp_path):
    """A resume from epoch 1 of a 2-epoch run trains epoch 2 again: the run keeps the
    values it has (the same ones: the resume is exact) and gains only epoch 3's."""
    args = ["train", tiny_config, "--work-dir", "work", "--cfg-options"]
    ok(
        run_cli(
            *args, "schedule.max_epochs=2", "mlflow.log_model=False", cwd=tmp_path, tracked=True
        )
    )
    client = client_for(tmp_path)
    (run,) = runs_of(client, "tiny")
    before = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/loss")}
    resume = ["train", tiny_config, "--work-dir", "work", "--resume", "work/epoch_1.pt"]
    options = ["--cfg-options", "schedule.max_epochs=3", "mlflow.log_model=False"]
    ok(run_cli(*resume, *options, cwd=tmp_path, tracked=True))
    (resumed,) = runs_of(client, "tiny")
    assert resumed.info.run_id == run.info.run_id
    after = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert sorted(step for step, _ in after) == [1, 2, 3]
    assert {step: value for step, value in after if step < 3} == before
    iterations = steps(client, run.info.run_id, "train/loss")
    assert len(iterations) == len(set(iterations))


def test_only_rank_zero_records_a_multi_process_run(tiny_config, tmp_path):
    options = ["--cfg-options", "mlflow.log_model=False", "mlflow.log_checkpoint=False"]
    result = run_cli(
        "train", tiny_config, "--nproc-per-node", "2", *options,
        cwd=tmp_path, env={"PORT": str(free_port())}, tracked=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (only,) = runs_of(client_for(tmp_path), "tiny")
    assert only.info.status == "FINISHED"
    assert only.data.params["run.world_size"] == "2"
    assert only.data.tags["ignite_cls.launcher"] == "spawn"
    assert result.stderr.count("mlflow: recording run") == 1


def test_a_run_that_raises_ends_failed(cifar10_subset, tiny_config, tmp_path):
    """An image that turns out unreadable in the middle of training."""
    data = tmp_path / "data"
    shutil.copytree(cifar10_subset(10, 4), data)
    broken = sorted((data / "train" / "cat").iterdir())[3]
    broken.write_bytes(b"not an image")
    config = tmp_path / "tiny.py"
    config.write_text(tiny_config.read_text().replace(str(cifar10_subset(10, 4)), str(data)))
    result = run_cli("train", config, cwd=tmp_path, tracked=True)
    assert result.returncode == 2, result.stderr[-3000:]
    client = client_for(tmp_path)
    (failed,) = runs_of(client, "tiny")
    assert failed.info.status == "FAILED"
    assert broken.name in failed.data.tags["ignite_cls.error"]
    assert any(p.startswith("logs/") for p in artifact_paths(client, failed.info.run_id))


def test_a_leftover_file_store_gets_a_migration_notice(tiny_config, tmp_path):
    old_run = (
        "import mlflow; mlflow.set_tracking_uri('file:./mlruns'); mlflow.set_experiment('old')\n"
        "with mlflow.start_run(): mlflow.log_param('a', 1)"
    )
    subprocess.run(
        [sys.executable, "-c", old_run], cwd=tmp_path, check=True, capture_output=True,
        env=cpu_env(MLFLOW_ALLOW_FILE_STORE="true"),
    )  # fmt: skip
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "mlruns").rglob("*"))
    args = ["train", tiny_config, "--cfg-options", "mlflow.log_model=False"]
    result = run_cli(*args, cwd=tmp_path, tracked=True)
    assert result.returncode == 0, result.stderr[-3000:]
    notices = [line for line in result.stderr.splitlines() if "migrate-filestore" in line]
    assert len(notices) == 1, result.stderr[-3000:]
    (done,) = runs_of(client_for(tmp_path), "tiny")
    assert done.info.status == "FINISHED"
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "mlruns").rglob("*")) == before

    command = re.search(r"mlflow (migrate-filestore .*)$", notices[0]).group(1).split()
    migrated = subprocess.run(
        [*MLFLOW_CLI, *command], cwd=tmp_path, env=cpu_env(), capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    (old,) = runs_of(client_for(tmp_path, "mlruns.db"), "old")
    assert old.data.params == {"a": "1"}
