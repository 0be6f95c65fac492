"""DataLoaders for training (sharded, reshuffled per epoch, resumable) and evaluation."""

import signal
from collections.abc import Callable

import cv2
import torch
from torch.utils.data import DataLoader, Dataset

from ignite_cls.data.samplers import ShardSampler, TrainSampler
from ignite_cls.errors import UserError


def _init_worker(worker_id: int) -> None:
    """Keep each loader worker on one core: with N workers, OpenCV's own thread pool per
    worker would oversubscribe the CPUs. (PyTorch already sets its own threads to 1.)

    Workers ignore SIGINT/SIGTERM: Ctrl-C and a scheduler's SIGTERM reach the whole process
    group, and the main process decides how to stop (checkpoint first); workers end with it.
    """
    cv2.setNumThreads(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_loader(
    dataset: Dataset,
    split_cfg: dict,
    *,
    train: bool,
    seed: int,
    rank: int,
    world_size: int,
    pin_memory: bool,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A loader over this process's share of `dataset`.

    Training batches are whole (drop_last) and come from a `TrainSampler`, whose
    `set_epoch` the caller invokes before each epoch (the loader exposes it as
    `loader.sampler`). Evaluation uses an unpadded `ShardSampler` and keeps the last,
    partial batch. The loader's own generator is seeded, so creating and iterating it does
    not consume the global torch RNG that model initialisation and dropout use.
    """
    batch_size, num_workers = split_cfg["batch_size"], split_cfg["num_workers"]
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise UserError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if train:
        sampler = TrainSampler(len(dataset), batch_size, seed, rank, world_size)
    else:
        sampler = ShardSampler(len(dataset), rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        worker_init_fn=_init_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn,
    )
