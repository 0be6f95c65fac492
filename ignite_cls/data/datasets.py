"""Map-style classification datasets: image folders, CIFAR pickle batches, scikit-learn digits.

Every dataset returns `(image, label, index)`: `image` is its transform applied to a CHW
uint8 tensor, `index` the sample actually returned (so predictions can be matched back to
`sample_name(index)`). A key `(index, epoch)`, as the training sampler yields, makes the
augmentation a pure function of (seed, epoch, index): the result is the same whatever the
number of workers or processes, and after resuming in the middle of an epoch.
"""

import difflib
import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ignite_cls.data.images import BadImageError, read_image
from ignite_cls.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DATASET_TYPES = ("folder", "cifar10", "cifar100", "digits")

Transform = Callable[[torch.Tensor], torch.Tensor]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one sample in one epoch (nearby keys give unrelated seeds)."""
    digest = hashlib.blake2b(f"{seed},{epoch},{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class ClassificationDataset(Dataset):
    """What the datasets share: the `(index, epoch)` key, the transform and its seeding.

    Subclasses set `classes` and `targets` and implement `load_rgb` and `sample_name`.
    """

    classes: list[str]
    targets: list[int]

    def __init__(self, transform: Transform | None = None, seed: int = 0) -> None:
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.targets)

    def load_rgb(self, index: int) -> np.ndarray:
        """The original image as HxWx3 uint8 RGB (a fresh array the caller may draw on)."""
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """A name identifying the sample in outputs: a file path or `<set>/<split>/<index>`."""
        raise NotImplementedError

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        """The image to return for `index` and the index it really comes from."""
        return self.load_rgb(index), index

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, epoch = key if isinstance(key, tuple) else (key, None)
        rgb, index = self._load(index)
        image = torch.from_numpy(rgb).permute(2, 0, 1)
        if self.transform is not None:
            if epoch is None:
                image = self.transform(image)
            else:
                # Only the CPU generator drives transforms of CPU tensors; seeding it alone
                # costs ~2 us where torch.manual_seed (all devices) costs ~200 us. Its state
                # is restored afterwards, so with num_workers=0 the reseeding does not leak
                # into the model's own randomness (dropout...).
                generator = torch.default_generator
                state = generator.get_state()
                generator.manual_seed(sample_seed(self.seed, epoch, index))
                try:
                    image = self.transform(image)
                finally:
                    generator.set_state(state)
        return image, int(self.targets[index]), index


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
        found = _find_images(os.path.join(root, name))
        if not found:
            empty.append(name)
        paths += found
        targets += [label] * len(found)
    if empty:
        raise UserError(f"no images in class folder(s) {', '.join(empty)} under {root}")
    return list(classes), paths, targets


def _find_images(folder: str) -> list[str]:
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


class CifarDataset(ClassificationDataset):
    """CIFAR-10/100 from torchvision's python pickle batches under `root` (never downloaded)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        cifar100: bool = False,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        from torchvision.datasets import CIFAR10, CIFAR100

        _check_split(split)
        cls = CIFAR100 if cifar100 else CIFAR10
        try:
            data = cls(os.fspath(root), train=split == "train", download=False)
        except RuntimeError:
            raise UserError(
                f"{cls.__name__} python pickle batches not found (or corrupted) in {root} "
                f"(expected {os.path.join(root, cls.base_folder)}; downloading is disabled)"
            ) from None
        self.name = cls.__name__.lower()
        self.split = split
        self.data = data.data  # N x 32 x 32 x 3 uint8
        self.targets = list(data.targets)
        self.classes = list(data.classes)

    def load_rgb(self, index: int) -> np.ndarray:
        return self.data[index].copy()

    def sample_name(self, index: int) -> str:
        return f"{self.name}/{self.split}/{index:06d}"


class DigitsDataset(ClassificationDataset):
    """scikit-learn's bundled 8x8 digits (no download), as 8x8 RGB images scaled to 0..255.

    The images stay 8x8 so that `load_rgb` is the original; pipelines resize them (e.g.
    `dict(type="Resize", size=32)` in every split's pipeline). The 1797 images are split
    by a fixed permutation into 80% "train" and 20% "test", the same on every call.
    """

    def __init__(self, split: str, transform: Transform | None = None, seed: int = 0) -> None:
        super().__init__(transform, seed)
        from sklearn.datasets import load_digits

        _check_split(split)
        digits = load_digits()
        order = np.random.RandomState(0).permutation(len(digits.target))
        n_train = len(order) * 4 // 5
        chosen = order[:n_train] if split == "train" else order[n_train:]
        gray = np.round(digits.images[chosen] * (255 / 16)).astype(np.uint8)
        self.data = np.repeat(gray[..., None], 3, axis=-1)  # N x 8 x 8 x 3
        self.targets = digits.target[chosen].tolist()
        self.classes = [str(i) for i in range(10)]
        self.split = split

    def load_rgb(self, index: int) -> np.ndarray:
        return self.data[index].copy()

    def sample_name(self, index: int) -> str:
        return f"digits/{self.split}/{index:06d}"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")


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
