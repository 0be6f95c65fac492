"""Images in class folders, or listed in an annotation file (MMPretrain's CustomDataset)."""

import os
from collections.abc import Sequence

import numpy as np
import torch

from ignite_cls.data.datasets import IMAGE_EXTENSIONS, ClassificationDataset, Transform
from ignite_cls.data.images import BadImageError, read_image
from ignite_cls.errors import UserError


class FolderDataset(ClassificationDataset):
    """Images in `root/<class name>/**/<image>`, or listed in an annotation file.

    Without `ann_file`, the sorted sub-folder names of `root` are the classes (or `classes`,
    which must name the same folders and then sets the label order); images are found
    recursively under each class folder. With `ann_file`, each non-blank line is
    `relative/path label` (path relative to `root`, label an integer), as in MMPretrain's
    CustomDataset; the classes are `classes` or "0".."max label".

    Hidden files and folders (starting with ".") are ignored: macOS copies leave `._x.jpg`
    files that are not images, and `.ipynb_checkpoints` is not a class.

    Images are decoded when used, never checked up front (that would read the whole set
    before the first step). An unreadable image raises `BadImageError` naming the file;
    with `skip_bad_images` the next readable sample is returned instead. Bad samples are
    marked in a shared-memory table, so every DataLoader worker avoids re-reading them and
    `skipped_count` / `skipped_names` in the main process see the workers' findings. In
    evaluation a substituted sample is counted twice; the count tells the caller how often.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike | None = None,
        classes: Sequence[str] | None = None,
        transform: Transform | None = None,
        seed: int = 0,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(transform, seed)
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise UserError(f"image folder not found: {root}")
        if ann_file is None:
            self.classes, self.paths, self.targets = _scan_folders(root, classes)
        else:
            ann_file = os.fspath(ann_file)
            self.classes, self.paths, self.targets = _read_ann_file(root, ann_file, classes)
        self.root = root
        self.skip_bad_images = skip_bad_images
        self._bad = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()

    def load_rgb(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])

    def sample_name(self, index: int) -> str:
        return self.paths[index]

    @property
    def skipped_count(self) -> int:
        """How many distinct images were found unreadable and skipped so far."""
        return int(self._bad.sum())

    @property
    def skipped_names(self) -> list[str]:
        """The paths of the images skipped so far."""
        return [self.paths[i] for i in self._bad.nonzero().flatten().tolist()]

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        if not self.skip_bad_images:
            return self.load_rgb(index), index
        n = len(self.paths)
        for step in range(n):
            candidate = (index + step) % n
            if self._bad[candidate]:
                continue
            try:
                return self.load_rgb(candidate), candidate
            except BadImageError:
                self._bad[candidate] = True
        raise BadImageError(f"no readable image in {self.root}")


def _scan_folders(
    root: str, classes: Sequence[str] | None
) -> tuple[list[str], list[str], list[int]]:
    """Classes, image paths and labels of a folder-per-class tree."""
    folders = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not folders:
        raise UserError(f"no class folders in {root} (expected {root}/<class name>/<image>)")
    if classes is None:
        classes = folders
    elif sorted(classes) != folders:
        missing, unlisted = sorted(set(classes) - set(folders)), sorted(set(folders) - set(classes))
        raise UserError(
            f"data.classes must name each sub-folder of {root} exactly once "
            f"(no folder for {missing}, not listed {unlisted})"
        )
    paths, targets, empty = [], [], []
    for label, name in enumerate(classes):
        found = find_images(os.path.join(root, name))
        if not found:
            empty.append(name)
        paths += found
        targets += [label] * len(found)
    if empty:
        raise UserError(f"no images in class folder(s) {', '.join(empty)} under {root}")
    return list(classes), paths, targets


def find_images(folder: str) -> list[str]:
    """Image files under `folder`, recursively, in a stable sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def _read_ann_file(
    root: str, ann_file: str, classes: Sequence[str] | None
) -> tuple[list[str], list[str], list[int]]:
    """Classes, image paths and labels from `relative/path label` lines."""
    if not os.path.isfile(ann_file):
        raise UserError(f"annotation file not found: {ann_file}")
    paths, targets, missing = [], [], []
    with open(ann_file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{ann_file}:{line_no}"
            fields = line.strip().rsplit(maxsplit=1)
            try:
                label = int(fields[1]) if len(fields) == 2 else None
            except ValueError:
                label = None
            if label is None:
                raise UserError(f"{where}: expected 'relative/path label', got {line.strip()!r}")
            if label < 0 or (classes is not None and label >= len(classes)):
                limit = "" if classes is None else f" 0..{len(classes) - 1} (data.classes)"
                raise UserError(f"{where}: label {label} out of range{limit}")
            path = os.path.join(root, fields[0])
            if not os.path.isfile(path):
                missing.append(f"{where}: image not found: {path}")
            paths.append(path)
            targets.append(label)
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise UserError(missing[0] + more)
    if not paths:
        raise UserError(f"annotation file lists no images: {ann_file}")
    if classes is None:
        classes = [str(i) for i in range(max(targets) + 1)]
    return list(classes), paths, targets
