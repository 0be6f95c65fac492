"""Datasets, transforms, samplers and loaders built from the `data` section of a config."""

import difflib
from collections.abc import Sequence

import ignite.distributed as idist
from torch.utils.data import DataLoader

from ignite_cls.data.datasets import CifarDataset, ClassificationDataset, DigitsDataset, Transform
from ignite_cls.data.folder import FolderDataset
from ignite_cls.data.gpu_resident import ResidentLoader
from ignite_cls.data.images import BadImageError, read_image
from ignite_cls.data.loaders import build_loader
from ignite_cls.data.samplers import ShardSampler, TrainSampler
from ignite_cls.data.transforms import build_transform
from ignite_cls.errors import UserError

__all__ = [
    "BadImageError",
    "CifarDataset",
    "ClassificationDataset",
    "DigitsDataset",
    "FolderDataset",
    "ShardSampler",
    "TrainSampler",
    "build_data",
    "build_dataset",
    "build_loader",
    "build_transform",
    "read_image",
]


DATASET_TYPES = ("folder", "cifar10", "cifar100", "digits")


def build_dataset(
    split_cfg: dict,
    data_cfg: dict,
    seed: int,
    transform: Transform | None,
    *,
    name: str = "data",
) -> ClassificationDataset:
    """The dataset a split's config describes; `name` (e.g. "data.train") prefixes errors."""
    kind = split_cfg["type"]
    root = split_cfg["root"]
    classes = data_cfg["classes"]
    if kind not in DATASET_TYPES:
        close = difflib.get_close_matches(str(kind), DATASET_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(DATASET_TYPES)
        raise UserError(f"{name}.type: unknown dataset type {kind!r}{hint} (known: {known})")
    if kind != "folder" and split_cfg["ann_file"] is not None:
        raise UserError(f"{name}.ann_file is only used with type 'folder', not {kind!r}")
    if kind in ("folder", "cifar10", "cifar100") and root is None:
        raise UserError(f"{name}.root is not set (required for type {kind!r})")
    if kind == "folder":
        return FolderDataset(
            root,
            split_cfg["ann_file"],
            classes,
            transform,
            seed,
            skip_bad_images=data_cfg["skip_bad_images"],
        )
    if kind == "digits":
        dataset = DigitsDataset(split_cfg["split"], transform, seed)
    else:
        dataset = CifarDataset(root, split_cfg["split"], kind == "cifar100", transform, seed)
    if classes is not None:
        if len(classes) != len(dataset.classes):
            raise UserError(
                f"data.classes names {len(classes)} classes but {kind} has {len(dataset.classes)}"
            )
        dataset.classes = list(classes)
    return dataset


def build_data(
    cfg: dict,
    splits: Sequence[str],
    rank: int,
    world_size: int,
    pin_memory: bool,
) -> dict[str, tuple[ClassificationDataset, DataLoader]]:
    """Dataset and loader for each of `splits` ("train", "val", "test").

    All splits must have the same class names in the same order (a model trained on one
    label order and evaluated on another would report nonsense), and `model.num_classes`,
    when set, must match their number.
    """
    built = {}
    for split in splits:
        split_cfg = cfg["data"][split]
        transform = build_transform(split_cfg["pipeline"], name=f"data.{split}.pipeline")
        dataset = build_dataset(
            split_cfg, cfg["data"], cfg["seed"], transform, name=f"data.{split}"
        )
        built[split] = dataset
    _check_classes(built, cfg["model"]["num_classes"])

    def loader(split: str, dataset: ClassificationDataset) -> DataLoader | ResidentLoader:
        common = dict(train=split == "train", seed=cfg["seed"], rank=rank, world_size=world_size)
        if cfg["data"]["gpu_resident"]:
            return ResidentLoader(dataset, cfg["data"][split], device=idist.device(), **common)
        return build_loader(dataset, cfg["data"][split], pin_memory=pin_memory, **common)

    return {split: (dataset, loader(split, dataset)) for split, dataset in built.items()}


def _check_classes(datasets: dict[str, ClassificationDataset], num_classes: int | None) -> None:
    if not datasets:
        return
    first, *others = datasets
    classes = datasets[first].classes
    for split in others:
        theirs = datasets[split].classes
        if theirs == classes:
            continue
        if len(theirs) != len(classes):
            detail = f"{len(theirs)} vs {len(classes)} classes"
        else:
            i = next(i for i, (a, b) in enumerate(zip(theirs, classes, strict=True)) if a != b)
            detail = f"label {i} is {theirs[i]!r} vs {classes[i]!r}"
        raise UserError(
            f"data.{split} classes differ from data.{first} ({detail}); "
            "make the splits agree or set data.classes"
        )
    if num_classes is not None and num_classes != len(classes):
        raise UserError(
            f"model.num_classes is {num_classes} but the data has {len(classes)} classes"
        )
