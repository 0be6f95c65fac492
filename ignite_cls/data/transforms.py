"""Config pipelines -> torchvision.transforms.v2 transforms on CHW uint8 tensors.

Images stay uint8 from decoding to the device, where they are normalised with data.mean and
data.std (0-255 scale): uint8 batches are a quarter of the size of float ones to copy
between processes and to the device.
"""

import difflib
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from ignite_cls.errors import UserError, one_line, out_of_memory

# Steps that change the dtype or leave the tensor world; the loader must get uint8 tensors.
_REJECTED = frozenset(
    {"Normalize", "ToDtype", "ConvertImageDtype", "ToTensor", "ToPILImage", "PILToTensor"}
)


def _transform_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(v2).items()
        if isinstance(obj, type) and issubclass(obj, v2.Transform) and name != "Transform"
    )


def build_transform(
    pipeline: Sequence[dict], *, name: str = "pipeline"
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Compose `dict(type="RandomCrop", size=32, padding=4)`-style steps; None when empty.

    Each step becomes `torchvision.transforms.v2.<type>(**other keys)`. A `transforms` list
    of steps (RandomApply, RandomChoice, RandomOrder, Compose) is built the same way.
    `name` (e.g. "data.train.pipeline") prefixes error messages.
    """
    if not pipeline:
        return None
    where = [f"{name}[{i}]" for i in range(len(pipeline))]
    steps = [_build_step(step, at) for step, at in zip(pipeline, where, strict=True)]
    return Pipeline(
        steps, [f"{at} {step['type']}" for step, at in zip(pipeline, where, strict=True)]
    )


class StepFailed(Exception):
    """A pipeline step raised on an image: which step (``data.train.pipeline[0] RandomCrop``)
    and why. The dataset, which knows the image's file, turns it into a ``UserError``."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step} failed: {reason}")
        self.step, self.reason = step, reason


class Pipeline(v2.Compose):
    """``v2.Compose`` whose failing step names itself (``StepFailed``)."""

    def __init__(self, transforms: Sequence[Callable], names: Sequence[str]) -> None:
        super().__init__(transforms)
        self.names = list(names)

    def forward(self, *inputs):
        needs_unpacking = len(inputs) > 1
        for transform, name in zip(self.transforms, self.names, strict=True):
            try:
                outputs = transform(*inputs)
            except Exception as e:
                if out_of_memory(e):  # the worker turns it into a batch-size hint
                    raise
                raise StepFailed(name, one_line(e)) from e
            inputs = outputs if needs_unpacking else (outputs,)
        return outputs


def _build_step(step: dict, where: str) -> v2.Transform:
    if not isinstance(step, dict) or not isinstance(step.get("type"), str):
        raise UserError(f"{where}: expected dict(type='<v2 transform>', ...), got {step!r}")
    kwargs = dict(step)
    kind = kwargs.pop("type")
    if kind in _REJECTED:
        raise UserError(
            f"{where}: {kind} is not allowed; images stay uint8 and normalisation is "
            "configured by data.mean / data.std"
        )
    names = _transform_names()
    if kind not in names:
        close = difflib.get_close_matches(kind, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"{where}: unknown torchvision.transforms.v2 transform {kind!r}{hint}")
    steps = kwargs.get("transforms")
    if isinstance(steps, list | tuple):
        kwargs["transforms"] = [
            _build_step(sub, f"{where}.transforms[{j}]") for j, sub in enumerate(steps)
        ]
    try:
        return getattr(v2, kind)(**kwargs)
    except (TypeError, ValueError) as e:
        message = " ".join(str(e).split())
        raise UserError(f"{where}: {kind}: {message}") from None
