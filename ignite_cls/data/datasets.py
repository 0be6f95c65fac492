"""Map-style classification datasets: image folders, CIFAR pickle batches, scikit-learn digits.

Every dataset returns `(image, label, index)`: `image` is its transform applied to a CHW
uint8 tensor, `index` the sample actually returned (so predictions can be matched back to
`sample_name(index)`). A key `(index, epoch)`, as the training sampler yields, makes the
augmentation a pure function of (seed, epoch, index): the result is the same whatever the
number of workers or processes, and after resuming in the middle of an epoch.
"""

import hashlib
import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ignite_cls.data.transforms import StepFailed
from ignite_cls.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

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
            try:
                image = self._transformed(image, index, epoch)
            except StepFailed as e:
                raise UserError(f"{e.step} failed on {self.sample_name(index)}: {e.reason}") from e
        return image, int(self.targets[index]), index

    def _transformed(self, image: torch.Tensor, index: int, epoch: int | None) -> torch.Tensor:
        if epoch is None:
            return self.transform(image)
        # Only the CPU generator drives transforms of CPU tensors; seeding it alone costs
        # ~2 us where torch.manual_seed (all devices) costs ~200 us. Its state is restored
        # afterwards, so with num_workers=0 the reseeding does not leak into the model's
        # own randomness (dropout...).
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(sample_seed(self.seed, epoch, index))
        try:
            return self.transform(image)
        finally:
            generator.set_state(state)


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
