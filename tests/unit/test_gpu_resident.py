"""GPU-resident data mode, exercised on the CPU device: the same batches, crops and
resumability as the worker pipeline, with augmentation done batched on the device."""

from __future__ import annotations

import pytest
import torch

from ignite_cls.data import FolderDataset
from ignite_cls.data.gpu_resident import ResidentLoader, device_augmentation, random_crop_flip
from ignite_cls.data.samplers import ShardSampler, TrainSampler
from ignite_cls.errors import UserError

CPU = torch.device("cpu")
PIPELINE = [dict(type="RandomCrop", size=32, padding=4), dict(type="RandomHorizontalFlip", p=0.5)]


@pytest.fixture
def cifar(cifar10_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("IGNITE_CLS_CACHE", str(tmp_path / "cache"))
    return FolderDataset(cifar10_subset(per_class_train=6, per_class_test=2) / "train")


def split_cfg(pipeline=PIPELINE, batch_size=8) -> dict:
    return dict(batch_size=batch_size, pipeline=pipeline)


def test_every_output_is_a_crop_of_the_padded_image_and_flips_happen():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, crop=8, padding=2, flip=0.5, generator=generator)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for i in range(len(images)):
        crops = [
            padded[i, :, top : top + 8, left : left + 8] for top in range(5) for left in range(5)
        ]
        plain = any(torch.equal(out[i], c) for c in crops)
        mirrored = any(torch.equal(out[i], c.flip(-1)) for c in crops)
        assert plain or mirrored, f"sample {i} is not a crop of its padded image"
        flips += mirrored and not plain
    assert 10 < flips < 54  # p=0.5 over 64 samples


def test_loader_follows_the_samplers_and_holds_the_decoded_images(cifar):
    train = ResidentLoader(
        cifar, split_cfg([]), train=True, seed=3, rank=0, world_size=1, device=CPU
    )
    train.sampler.set_epoch(2)
    expected = TrainSampler(len(cifar), 8, 3)
    expected.set_epoch(2)
    got = torch.cat([idx for _, _, idx in train]).tolist()
    assert got == [i for i, _ in expected]
    images, labels, indices = next(iter(train))
    for image, label, index in zip(images, labels, indices, strict=True):
        assert torch.equal(image, torch.from_numpy(cifar.load_rgb(int(index))).permute(2, 0, 1))
        assert int(label) == cifar.targets[int(index)]
    shard = ResidentLoader(
        cifar, split_cfg(), train=False, seed=0, rank=1, world_size=2, device=CPU
    )
    assert torch.cat([i for _, _, i in shard]).tolist() == list(ShardSampler(len(cifar), 1, 2))


def test_augmentation_repeats_per_epoch_and_resumes_mid_epoch(cifar):
    def epoch_batches(epoch: int, start_batch: int = 0) -> list[torch.Tensor]:
        loader = ResidentLoader(
            cifar, split_cfg(), train=True, seed=0, rank=0, world_size=1, device=CPU
        )
        loader.sampler.set_epoch(epoch, start_batch=start_batch)
        return [images for images, _, _ in loader]

    first, again, other = epoch_batches(1), epoch_batches(1), epoch_batches(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    tail = epoch_batches(1, start_batch=3)
    assert len(tail) == len(first) - 3
    assert all(torch.equal(a, b) for a, b in zip(first[3:], tail, strict=True))


def test_decoded_once_into_the_cache(cifar, tmp_path):
    ResidentLoader(cifar, split_cfg(), train=False, seed=0, rank=0, world_size=1, device=CPU)
    cached = list((tmp_path / "cache" / "resident").glob("*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = ResidentLoader(
        cifar, split_cfg(), train=False, seed=0, rank=0, world_size=1, device=CPU
    )
    assert cached[0].stat().st_mtime_ns == stamp
    assert again.images.shape == (len(cifar), 3, 32, 32)


def test_unsupported_pipeline_step_is_a_clear_error():
    with pytest.raises(
        UserError, match="supports only RandomCrop and RandomHorizontalFlip.*ColorJitter"
    ):
        device_augmentation([dict(type="ColorJitter", brightness=0.2)])
