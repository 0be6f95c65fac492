"""MixUp and CutMix (``data.batch_augments``), from torchvision.transforms.v2.

They mix images and labels across a batch, so they run in the training step on the device,
after normalisation (the mix of normalised images is the normalised mix), and turn the labels
into soft targets for the loss. With several listed, one is picked per batch (weights ``p``).
Their random draws come from a generator seeded by the run's seed, the rank and the
iteration: a batch gets the same mix whether or not the run was interrupted and resumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from ignite_cls.config import close_matches
from ignite_cls.errors import UserError

BATCH_AUGMENTS = ("MixUp", "CutMix")


class BatchAugment:
    """``(images, labels, iteration) -> (mixed images, soft targets)``, reproducibly."""

    def __init__(self, transform: v2.Transform, seed: int, rank: int):
        self.transform = transform
        self.seed, self.rank = seed, rank

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, iteration: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # v2's MixUp, CutMix and RandomChoice draw from the CPU's default generator
        with torch.random.fork_rng(devices=[]):
            key = hash((self.seed, self.rank, iteration)) % (1 << 63)
            torch.random.default_generator.manual_seed(key)
            return self.transform(images, labels)


def build_batch_augment(
    steps: Sequence[dict],
    num_classes: int,
    seed: int,
    rank: int,
    *,
    name: str = "data.batch_augments",
) -> BatchAugment | None:
    """``[dict(type="MixUp", alpha=0.2), dict(type="CutMix", alpha=1.0, p=0.5)]`` -> one
    augment picked per batch; None when the list is empty."""
    if not steps:
        return None
    transforms, weights = [], []
    for i, step in enumerate(steps):
        where = f"{name}[{i}]"
        if not isinstance(step, dict) or step.get("type") not in BATCH_AUGMENTS:
            kind = step.get("type") if isinstance(step, dict) else step
            raise UserError(
                f"{where}: expected dict(type='MixUp' or 'CutMix', alpha=...), got {kind!r}"
                f"{close_matches(str(kind), BATCH_AUGMENTS)}"
            )
        kwargs = dict(step)
        kind = kwargs.pop("type")
        weights.append(float(kwargs.pop("p", 1.0)))
        try:
            transforms.append(getattr(v2, kind)(num_classes=num_classes, **kwargs))
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: {kind}: {' '.join(str(e).split())}") from None
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"{name}: the weights p must be 0 or more, and not all 0")
    transform = transforms[0] if len(transforms) == 1 else v2.RandomChoice(transforms, p=weights)
    return BatchAugment(transform, seed, rank)
