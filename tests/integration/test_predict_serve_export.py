"""Using a trained model: ``predict`` on new images (every input form, several processes,
bad input), the Python API, the MLflow model served by a real ``mlflow models serve``, and
``export`` to ONNX and TorchScript, all on CIFAR-10 JPEGs and all giving the same answers."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, cpu_env, error_line, free_port, ok, run_cli

from ignite_cls.data.images import read_image

pytestmark = pytest.mark.integration

CIFAR_CONFIG = str(ROOT / "configs" / "resnet18_cifar10.py")
# ResNet-18 with the standard stem, 2 epochs on 500 images: seconds, and varied predictions
LIGHT = ["model.cifar_stem=False", "data.train.batch_size=32", "optimizer.lr=0.01"]
LIGHT += ["schedule.max_epochs=2", "checkpoint.keep=1"]


@pytest.fixture(scope="module")
def trained(cifar10_subset, tmp_path_factory) -> dict:
    """A tracked one-epoch training on CIFAR-10 JPEGs, and `test --out` of its checkpoint."""
    root = cifar10_subset(50, 10)
    folder = tmp_path_factory.mktemp("trained")
    roots = [f"data.{s}.root={root / d}" for s, d in (("train", "train"), ("val", "test"))]
    roots.append(f"data.test.root={root / 'test'}")
    options = ["--cfg-options", *LIGHT, *roots]
    ok(run_cli("train", CIFAR_CONFIG, "--work-dir", "work", *options, cwd=folder, tracked=True))
    checkpoint = folder / "work" / "epoch_2.pt"
    test = ["test", CIFAR_CONFIG, checkpoint, "--work-dir", "tested", "--out", "test.json"]
    ok(run_cli(*test, *options, cwd=folder))
    records = json.loads((folder / "test.json").read_text())
    assert len({r["pred_label"] for r in records}) >= 3, "too few classes predicted to compare"
    return dict(root=root, folder=folder, checkpoint=checkpoint, options=options, test=records)


def predict(trained: dict, *args: object, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    command = ["predict", CIFAR_CONFIG, trained["checkpoint"], *args, *trained["options"]]
    return run_cli(*command, cwd=cwd, **kwargs)


def assert_same_rows(rows: list[dict], expected: list[dict]) -> None:
    assert [{k: v for k, v in r.items() if "score" not in k} for r in rows] == [
        {k: v for k, v in r.items() if "score" not in k} for r in expected
    ]
    for key in ("score", "topk_scores"):
        got, want = [r[key] for r in rows], [r[key] for r in expected]
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-6, err_msg=key)


def assert_rows_match_test(rows: list[dict], test_records: list[dict]) -> None:
    assert [r["img_path"] for r in rows] == [t["img_path"] for t in test_records]
    assert [r["index"] for r in rows] == [t["pred_label"] for t in test_records]
    assert [r["class"] for r in rows] == [t["pred_class"] for t in test_records]
    expected = [t["pred_score"][t["pred_label"]] for t in test_records]
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-6)


def test_predict_on_a_folder_equals_test_out_and_two_processes_agree(trained, tmp_path):
    ok(predict(trained, trained["root"] / "test", "--out", "rows.json", cwd=tmp_path))
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert_rows_match_test(rows, trained["test"])
    assert all(len(r["topk_classes"]) == 5 and r["topk_classes"][0] == r["class"] for r in rows)
    assert all(r["topk_scores"] == sorted(r["topk_scores"], reverse=True) for r in rows)

    two = ["--nproc-per-node", 2, "--out", "two.json"]
    ok(
        predict(
            trained, trained["root"] / "test", *two, cwd=tmp_path, env={"PORT": str(free_port())}
        )
    )
    assert_same_rows(json.loads((tmp_path / "two.json").read_text()), rows)


def test_every_input_form_keeps_the_given_order(trained, tmp_path):
    test_root = trained["root"] / "test"
    cats = sorted(str(p) for p in (test_root / "cat").glob("*.jpg"))
    listed = tmp_path / "lists" / "few.txt"
    listed.parent.mkdir()
    listed.write_text("\n".join(os.path.relpath(p, listed.parent) for p in cats[:3]) + "\n\n")
    inputs = [cats[5], f"{test_root}/dog/*.jpg", listed, test_root / "airplane"]
    ok(predict(trained, *inputs, "--out", "rows.csv", "--topk", 20, cwd=tmp_path))
    with open(tmp_path / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    dogs = sorted(str(p) for p in (test_root / "dog").glob("*.jpg"))
    airplanes = sorted(str(p) for p in (test_root / "airplane").glob("*.jpg"))
    expected = [cats[5], *dogs, *(os.path.normpath(p) for p in cats[:3]), *airplanes]
    assert [os.path.normpath(r["img_path"]) for r in rows] == [
        os.path.normpath(p) for p in expected
    ]
    assert all(len(json.loads(r["topk_classes"])) == 10 for r in rows)  # K clipped to 10 classes


def test_the_python_api_gives_the_command_s_answers_for_paths_and_arrays(trained, tmp_path):
    from ignite_cls import Classifier

    ok(predict(trained, trained["root"] / "test", "--out", "rows.pkl", cwd=tmp_path))
    rows = pickle.loads((tmp_path / "rows.pkl").read_bytes())
    classifier = Classifier.from_checkpoint(trained["checkpoint"], device="cpu")  # no config
    paths = [r["img_path"] for r in rows]
    by_path = classifier.predict(paths)
    assert [r["index"] for r in by_path] == [r["index"] for r in rows]
    assert [r["score"] for r in by_path] == pytest.approx([r["score"] for r in rows], abs=1e-6)
    by_array = classifier.predict([read_image(p) for p in paths[:7]], topk=3)
    assert [r["topk_indices"] for r in by_array] == [r["topk_indices"][:3] for r in rows[:7]]
    assert "img_path" not in by_array[0]


def test_predict_prints_a_table_without_out_and_is_an_mlflow_run(trained):
    folder = trained["folder"]
    images = sorted((trained["root"] / "test" / "ship").glob("*.jpg"))[:4]
    result = ok(predict(trained, *images, cwd=folder, tracked=True))
    ships = [t for t in trained["test"] if "/ship/" in t["img_path"]][:4]
    for path, test in zip(images, ships, strict=True):
        assert f"{path}  {test['pred_class']:<16}  " in result.stderr

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("resnet18_cifar10")
    runs = client.search_runs([experiment.experiment_id], "tags.`ignite_cls.command` = 'predict'")
    (run,) = runs
    (train,) = client.search_runs([experiment.experiment_id], "tags.`ignite_cls.command` = 'train'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["ignite_cls.train_run_id"] == train.info.run_id
    assert run.data.params["dataset.predict.size"] == "4"

    ok(predict(trained, *images, "--out", "ships.csv", cwd=folder, tracked=True))
    runs = client.search_runs([experiment.experiment_id], "tags.`ignite_cls.command` = 'predict'")
    assert len(runs) == 2 and runs[0].data.params["cli.out"] == "ships.csv"
    logged = client.download_artifacts(runs[0].info.run_id, "outputs/ships.csv")
    assert Path(logged).read_text() == (folder / "ships.csv").read_text()


def _break(folder: Path) -> Path:
    bad = folder / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    return bad


def test_bad_inputs_are_one_line_and_write_nothing(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["root"] / "test", data)
    (tmp_path / "empty").mkdir()
    cases = [
        ([tmp_path / "missing.jpg"], "input not found: "),
        ([tmp_path / "empty"], "no images in the folder"),
        ([f"{data}/*.png"], "the pattern matches no image"),
    ]
    for inputs, message in cases:
        line = error_line(predict(trained, *inputs, "--out", "rows.json", cwd=tmp_path))
        assert message in line, line
    line = error_line(predict(trained, data, "--out", "rows.txt", cwd=tmp_path))
    assert "unknown extension '.txt'" in line
    bad = _break(data)
    line = error_line(predict(trained, data, "--out", "rows.json", cwd=tmp_path))
    assert f"cannot decode image: {bad}" in line
    assert not (tmp_path / "rows.json").exists()

    skip = ["--out", "rows.json", "--cfg-options", "data.skip_bad_images=True"]
    result = ok(predict(trained, data, *skip, cwd=tmp_path))
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert str(bad) not in {r["img_path"] for r in rows}
    assert len(rows) == len(trained["test"])
    assert "skipped 1 unreadable image(s)" in result.stderr


# ---------------------------------------------------------------- serving through MLflow


@contextlib.contextmanager
def serving(model_uri: str, cwd: Path, env: dict) -> Iterator[str]:
    port = free_port()
    args = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    with open(cwd / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", *args], cwd=cwd, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the model server did not come up"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_logged_model_is_served_and_answers_like_predict(trained, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    folder = trained["folder"]
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resnet18_cifar10")
    (train,) = client.search_runs([experiment.experiment_id], "tags.`ignite_cls.command` = 'train'")
    model_uri = f"runs:/{train.info.run_id}/model"
    images = [Path(t["img_path"]) for t in trained["test"][::9]]
    expected = trained["test"][::9]

    # the server starts uvicorn from PATH, as in an activated virtual environment
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    env = cpu_env(MLFLOW_TRACKING_URI=uri, PATH=path)
    with serving(model_uri, tmp_path, env) as url:
        records = [{"image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        body = json.dumps({"dataframe_records": records, "params": {"topk": 3}}).encode()
        request = urllib.request.Request(
            f"{url}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answers = json.loads(response.read())["predictions"]
    assert [a["index"] for a in answers] == [t["pred_label"] for t in expected]
    assert [a["class"] for a in answers] == [t["pred_class"] for t in expected]
    scores = [t["pred_score"][t["pred_label"]] for t in expected]
    assert [a["score"] for a in answers] == pytest.approx(scores, abs=1e-6)
    assert all(len(a["topk_classes"]) == 3 for a in answers)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = mlflow.pyfunc.load_model(model_uri)
    frame = loaded.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    assert frame["index"].tolist() == [a["index"] for a in answers]
    module = loaded.unwrap_python_model().classifier.torch_module()
    pixels = torch.from_numpy(np.stack([read_image(p) for p in images])).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = module(pixels.float())
    assert logits.argmax(1).tolist() == [a["index"] for a in answers]


# ---------------------------------------------------------------- export


NO_ONNXRUNTIME = "import sys; sys.modules['onnxruntime'] = None\n"
NO_TOLERANCE = "import ignite_cls.export as e; e.TOLERANCE = 0.0\n"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_checks_itself_and_runs_with_any_batch_size(trained, tmp_path, fmt):
    from ignite_cls import Classifier

    out = tmp_path / f"model.{fmt}"
    args = ["export", CIFAR_CONFIG, trained["checkpoint"], "--format", fmt, "--out", out]
    result = ok(run_cli(*args, *trained["options"], cwd=tmp_path))
    assert f"{fmt} {out}: 16 test images, largest |logit difference| " in result.stderr
    assert "top-1 identical" in result.stderr

    module = Classifier.from_checkpoint(trained["checkpoint"], device="cpu").torch_module()
    images = [read_image(p) for p in sorted((trained["root"] / "test" / "frog").glob("*.jpg"))]
    batch = torch.from_numpy(np.stack(images[:5])).permute(0, 3, 1, 2).float()  # 5, not 16
    with torch.no_grad():
        expected = module(batch).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": batch.numpy()})[0]
    else:
        got = torch.jit.load(str(out))(batch).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("sitecustomize", "code", "message"),
    [
        (NO_TOLERANCE, 1, "largest |logit difference|"),
        (NO_ONNXRUNTIME, 2, '--format onnx needs onnxruntime: pip install "ignite_cls[export]"'),
    ],
)
def test_export_failures_are_one_line(trained, tmp_path, sitecustomize, code, message):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(sitecustomize)
    out = tmp_path / "model.onnx"
    args = ["export", CIFAR_CONFIG, trained["checkpoint"], "--format", "onnx", "--out", out]
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    result = run_cli(*args, *trained["options"], cwd=tmp_path, env=env)
    assert result.returncode == code, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
    assert "Traceback" not in result.stderr
