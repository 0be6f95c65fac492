"""``python -m ignite_cls export CONFIG CHECKPOINT --format onnx|torchscript --out FILE``.

The exported graph takes float32 RGB images (N, 3, H, W) on the 0-255 scale (normalisation
inside, as the MLflow model does it), with a dynamic batch dimension, and returns logits. The
command checks its own output: it runs the written file (onnxruntime for ONNX) on a batch of
the config's test images and compares with PyTorch's logits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ignite_cls.compat import stop_loader_workers
from ignite_cls.config import setting
from ignite_cls.data import build_data
from ignite_cls.errors import CheckFailed, UserError
from ignite_cls.inference import Classifier
from ignite_cls.job import Job

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-3  # largest absolute logit difference accepted
CHECK_IMAGES = 16
ONNX_INSTALL = 'pip install "ignite_cls[export]"'

logger = logging.getLogger("ignite_cls")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise UserError(f"--format onnx needs {e.name}: {ONNX_INSTALL}") from None


def check_images(cfg: dict) -> torch.Tensor:
    """Up to CHECK_IMAGES images of the config's test split, through its test pipeline, as
    float32 0-255."""
    dataset, loader = build_data(cfg, ["test"], 0, 1, pin_memory=False)["test"]
    try:
        images = next(iter(loader))[0][:CHECK_IMAGES]
    finally:
        stop_loader_workers([loader])
    return images.float()


def write_onnx(module: torch.nn.Module, images: torch.Tensor, out: Path) -> np.ndarray:
    """Export with torch.export (dynamic batch), then run the file with onnxruntime."""
    import onnxruntime

    batch = torch.export.Dim("batch")
    torch.onnx.export(
        module,
        (images,),
        str(out),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        verbose=False,
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})[0]


def write_torchscript(module: torch.nn.Module, images: torch.Tensor, out: Path) -> np.ndarray:
    """Trace (the batch dimension stays free in a trace of these models), save, load, run."""
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export
        warnings.simplefilter("ignore")
        torch.jit.trace(module, images).save(str(out))
        loaded = torch.jit.load(str(out))
    with torch.no_grad():
        return loaded(images).numpy()


def run_export(job: Job) -> None:
    cfg = job.cfg
    fmt, out = setting(cfg, "export.format"), Path(str(setting(cfg, "export.out")))
    check_format(fmt)
    classifier = Classifier.from_checkpoint(job.checkpoint, cfg, device="cpu")
    module = classifier.torch_module()
    images = check_images(cfg)
    with torch.no_grad():
        expected = module(images).numpy()
    write = write_onnx if fmt == "onnx" else write_torchscript
    got = write(module, images, out)
    difference = float(np.abs(got - expected).max())
    same_top1 = bool((got.argmax(1) == expected.argmax(1)).all())
    summary = (
        f"{fmt} {out}: {len(images)} test images, largest |logit difference| {difference:.2e} "
        f"(limit {TOLERANCE:g}), top-1 {'identical' if same_top1 else 'DIFFERENT'}"
    )
    if difference > TOLERANCE or not same_top1:
        raise CheckFailed(summary)
    logger.info(summary)
