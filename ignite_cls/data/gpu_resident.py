"""GPU-resident data: the whole decoded dataset as one uint8 tensor on the device, batches
cut and augmented there, no CPU worker in the loop (``data.gpu_resident=True``).

For datasets that fit in device memory (CIFAR-sized). Images are decoded once (through the
dataset, so OpenCV decoding and class handling stay the same) into a cache file beside the
user's other caches; later runs load that file directly. The training pipeline may hold
``RandomCrop`` (with ``padding``) and ``RandomHorizontalFlip`` only; they run batched on the
device with a generator seeded by (seed, epoch, batch), so runs and resumes are repeatable.
Batches are ``(uint8 images, labels, indices)`` like the DataLoader's.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator

import torch
from tqdm import tqdm

from ignite_cls.checkpoint_io import atomic_write, cache_dir
from ignite_cls.data.datasets import ClassificationDataset, sample_seed
from ignite_cls.data.samplers import ShardSampler, TrainSampler
from ignite_cls.errors import UserError

logger = logging.getLogger("ignite_cls")
SUPPORTED = ("RandomCrop", "RandomHorizontalFlip")


def decoded_images(dataset: ClassificationDataset, device: torch.device) -> torch.Tensor:
    """All images as N x 3 x H x W uint8 on ``device``, decoded once and cached on disk."""
    names = "\n".join(dataset.sample_name(i) for i in range(len(dataset)))
    key = hashlib.sha256(f"{type(dataset).__name__}\n{names}".encode()).hexdigest()[:20]
    path = cache_dir() / "resident" / f"{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True).to(device)
    first = dataset.load_rgb(0)
    images = torch.empty((len(dataset), 3, *first.shape[:2]), dtype=torch.uint8)
    for i in tqdm(range(len(dataset)), desc="decode once", leave=False):
        rgb = dataset.load_rgb(i)
        if rgb.shape != first.shape:
            raise UserError(
                f"data.gpu_resident needs images of one size: {dataset.sample_name(i)} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}, the first is {first.shape[1]}x{first.shape[0]}"
            )
        images[i] = torch.from_numpy(rgb).permute(2, 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(images, f))
    logger.info(f"decoded {len(dataset)} images into {path}")
    return images.to(device)


def device_augmentation(pipeline: list[dict]) -> tuple[int | None, int, float]:
    """(crop size, padding, flip probability) from a pipeline of the supported steps."""
    crop, padding, flip = None, 0, 0.0
    for step in pipeline:
        kind = step.get("type")
        if kind == "RandomCrop":
            size = step["size"]
            crop = size if isinstance(size, int) else size[0]
            padding = int(step.get("padding") or 0)
        elif kind == "RandomHorizontalFlip":
            flip = float(step.get("p", 0.5))
        else:
            raise UserError(
                f"data.gpu_resident supports only {' and '.join(SUPPORTED)} in the pipeline, "
                f"not {kind}"
            )
    return crop, padding, flip


def random_crop_flip(
    images: torch.Tensor, crop: int, padding: int, flip: float, generator: torch.Generator
) -> torch.Tensor:
    """Per-sample random crop of the zero-padded images and horizontal flip, batched."""
    n, _, h, w = images.shape
    device = images.device
    if padding:
        images = torch.nn.functional.pad(images, (padding,) * 4)
    top = torch.randint(0, h + 2 * padding - crop + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w + 2 * padding - crop + 1, (n,), generator=generator, device=device)
    offsets = torch.arange(crop, device=device)
    rows = (top[:, None] + offsets)[:, None, :, None]
    cols = (left[:, None] + offsets)[:, None, None, :]
    flipped = torch.rand(n, generator=generator, device=device) < flip
    cols = torch.where(flipped[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return images[batch, channels, rows, cols]


class ResidentLoader:
    """Iterates a device-resident dataset in batches, with the samplers' ordering and sharding."""

    def __init__(
        self,
        dataset: ClassificationDataset,
        split_cfg: dict,
        *,
        train: bool,
        seed: int,
        rank: int,
        world_size: int,
        device: torch.device,
    ) -> None:
        self.dataset = dataset
        self.batch_size = split_cfg["batch_size"]
        self.train = train
        self.seed = seed
        self.device = device
        self.images = decoded_images(dataset, device)
        self.labels = torch.as_tensor(dataset.targets, device=device)
        self.crop, self.padding, self.flip = (
            device_augmentation(split_cfg["pipeline"]) if train else (None, 0, 0.0)
        )
        if train:
            self.sampler = TrainSampler(len(dataset), self.batch_size, seed, rank, world_size)
        else:
            self.sampler = ShardSampler(len(dataset), rank, world_size)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        keys = list(self.sampler)
        indices = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys])
        first_batch = self.sampler.start_batch if self.train else 0
        for b, start in enumerate(range(0, len(indices), self.batch_size), start=first_batch):
            chosen = indices[start : start + self.batch_size]
            on_device = chosen.to(self.device, non_blocking=True)
            images = self.images[on_device]
            if self.train and (self.crop or self.flip):
                generator = torch.Generator(self.device)
                generator.manual_seed(sample_seed(self.seed, self.sampler.epoch, b))
                crop = self.crop or images.shape[-1]
                images = random_crop_flip(images, crop, self.padding, self.flip, generator)
            yield images, self.labels[on_device], chosen
