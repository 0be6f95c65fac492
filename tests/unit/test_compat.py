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

from ignite_cls.compat import close_progress_bar, stop_loader_workers
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
