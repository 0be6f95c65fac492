"""Samplers that make training order a function of (seed, epoch) and shard evaluation exactly."""

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from ignite_cls.errors import UserError


class TrainSampler(Sampler[tuple[int, int]]):
    """Yields `(index, epoch)` keys: this process's share of the epoch's permutation.

    The permutation comes from `seed + epoch` only, so every process computes the same one
    and takes `perm[rank::world_size]` after padding it (by wrapping around) to a multiple
    of `world_size`; with `drop_last` each share is then cut to whole batches. The epoch
    in the key lets the dataset seed each sample's augmentation. `set_epoch(e, start_batch=k)`
    skips the first k batches of the share, which is exactly where a run stopped after k
    iterations of epoch e, so a resumed run sees the same samples and augmentations.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0
        share = math.ceil(dataset_len / world_size)
        self._len = share - share % batch_size if drop_last else share
        if self._len == 0:
            raise UserError(
                f"the training set has {dataset_len} samples, fewer than one batch per process "
                f"(batch_size {batch_size} x {world_size} processes)"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate next, starting `start_batch` batches into it."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch {start_batch} is not in 0..{self.num_batches}")
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def num_batches(self) -> int:
        """Batches in a full epoch for this process."""
        return math.ceil(self._len / self.batch_size)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.dataset_len, generator=generator)
        total = math.ceil(self.dataset_len / self.world_size) * self.world_size
        perm = perm.repeat(math.ceil(total / self.dataset_len))[:total]
        share = perm[self.rank :: self.world_size][: self._len]
        for index in share[self.start_batch * self.batch_size :].tolist():
            yield index, self.epoch


class ShardSampler(Sampler[int]):
    """Indices `rank::world_size`, unpadded, so distributed evaluation counts each sample once.

    Shards may differ in length by one; gathering results must allow for that.
    """

    def __init__(self, dataset_len: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.indices = range(rank, dataset_len, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
