"""Each reach into a library's private parts (ignite_cls/compat.py) still does its job with the
installed versions: an upgrade that changes one fails here."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from ignite.handlers import ProgressBar
from torch.utils.data import DataLoader, Dataset

from ignite_cls.compat import close_progress_bar, log_pyfunc_model_unchecked, stop_loader_workers
from ignite_cls.data.loaders import _init_worker


def test_close_progress_bar_closes_the_bar_an_exception_left_open():
    def step(engine: Engine, batch: int) -> None:
        if batch == 3:
            raise RuntimeError("stop here")

    engine = Engine(step)
    bar = ProgressBar(persist=True)
    bar.attach(engine)
    with pytest.raises(RuntimeError, match="stop here"):
        engine.run(range(10))
    open_bar = bar.pbar
    assert open_bar is not None and not open_bar.disable  # Ignite left it open
    close_progress_bar(bar)
    assert bar.pbar is None and open_bar.disable  # tqdm marks a closed bar disabled
    close_progress_bar(bar)  # closing twice is harmless


class Pids(Dataset):
    """Each item is the pid of the process that loaded it."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> int:
        time.sleep(0.01)
        return os.getpid()


def test_stop_loader_workers_ends_persistent_workers_that_ignore_sigterm():
    loader = DataLoader(
        Pids(), batch_size=4, num_workers=2, persistent_workers=True, worker_init_fn=_init_worker
    )
    pids = {int(pid) for batch in loader for pid in batch}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid in pids:
        os.kill(pid, signal.SIGTERM)  # ignored: the workers keep running
    time.sleep(0.5)
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    stop_loader_workers([loader])
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # ended and reaped
    stop_loader_workers([loader, DataLoader(torch.arange(4))])  # idle loaders: nothing to do


MARKED_MODEL = """
from pathlib import Path

import mlflow.models
import mlflow.pyfunc


class Marked(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        Path({marker!r}).write_text("loaded")

    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(Marked())
"""


def test_log_pyfunc_model_unchecked_logs_the_example_without_loading_the_model(tmp_path):
    import mlflow
    import pandas as pd
    from mlflow.models import get_model_info, infer_signature

    marker = tmp_path / "loaded.txt"
    code = tmp_path / "marked_model.py"
    code.write_text(MARKED_MODEL.format(marker=str(marker)))
    example = pd.DataFrame({"x": [1.0, 2.0]})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with mlflow.start_run() as run:
            log_pyfunc_model_unchecked(
                name="model",
                python_model=str(code),
                signature=infer_signature(example, example),
                input_example=example,
                pip_requirements=["mlflow"],
            )
        assert not marker.exists()  # logging never loaded the model
        uri = f"runs:/{run.info.run_id}/model"
        info = get_model_info(uri)
        assert info.saved_input_example_info["serving_input_path"]
        assert info.signature.inputs.input_names() == ["x"]
        assert "python_function" in info.flavors
        model = mlflow.pyfunc.load_model(uri)
        assert marker.read_text() == "loaded"  # loading it does (what MLflow's check does)
        assert model.predict(example)["x"].tolist() == [1.0, 2.0]
    finally:
        mlflow.set_tracking_uri(None)
