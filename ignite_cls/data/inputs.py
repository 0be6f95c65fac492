"""The images ``predict`` classifies: image files, folders (recursive), glob patterns, or text
files listing one path a line, in the order given (folders and patterns sorted).

``InputImages`` reads them like the training data (OpenCV decode, the config's test
pipeline). With ``data.skip_bad_images`` an unreadable image becomes ``None``, which
``collate_readable`` leaves out of its batch, so it gets no row (and is counted)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import torch
from torch.utils.data import default_collate

from ignite_cls.data.datasets import IMAGE_EXTENSIONS, ClassificationDataset
from ignite_cls.data.folder import find_images
from ignite_cls.data.images import BadImageError, read_image
from ignite_cls.errors import UserError

GLOB_CHARACTERS = set("*?[")


def is_image_file(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Every image the inputs name, in order; a missing path, a folder or pattern without
    images, or a list naming a missing file is a ``UserError``."""
    if not inputs:
        raise UserError("predict needs at least one INPUT: image files, folders or patterns")
    paths: list[str] = []
    for item in map(str, inputs):
        if os.path.isdir(item):
            found = find_images(item)
            if not found:
                raise UserError(f"input {item}: no images in the folder")
            paths += found
        elif os.path.isfile(item):
            paths += [item] if is_image_file(item) else _listed(item)
        elif GLOB_CHARACTERS & set(item):
            found = [p for p in sorted(glob.glob(item, recursive=True)) if is_image_file(p)]
            if not found:
                raise UserError(f"input {item}: the pattern matches no image")
            paths += found
        else:
            raise UserError(f"input not found: {item}")
    return paths


def _listed(list_file: str) -> list[str]:
    """The images a text file lists, one path a line (relative to the file's folder)."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"input {list_file}: not an image, and not a list of paths ({e})") from None
    folder = os.path.dirname(list_file)
    paths = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        path = os.path.join(folder, line.strip())
        if not is_image_file(path):
            what = "not an image file" if os.path.exists(path) else "not found"
            raise UserError(f"{list_file}:{number}: {what}: {path}")
        paths.append(path)
    if not paths:
        raise UserError(f"input {list_file}: lists no images")
    return paths


class InputImages(ClassificationDataset):
    """Unlabelled images by path (label -1); ``classes`` are the model's."""

    def __init__(self, paths: list[str], classes: list[str], transform, skip_bad_images: bool):
        super().__init__(transform)
        self.paths = paths
        self.classes = list(classes)
        self.targets = [-1] * len(paths)
        self.skip_bad_images = skip_bad_images
        self._bad = torch.zeros(len(paths), dtype=torch.bool).share_memory_()

    def load_rgb(self, index: int):
        return read_image(self.paths[index])

    def sample_name(self, index: int) -> str:
        return self.paths[index]

    @property
    def skipped_count(self) -> int:
        return int(self._bad.sum())

    @property
    def skipped_names(self) -> list[str]:
        return [self.paths[i] for i in self._bad.nonzero().flatten().tolist()]

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except BadImageError:
            if not self.skip_bad_images:
                raise
            self._bad[key] = True
            return None


def collate_readable(batch: list) -> tuple | None:
    """``default_collate`` of the readable samples; None when a batch has none."""
    readable = [sample for sample in batch if sample is not None]
    return default_collate(readable) if readable else None
