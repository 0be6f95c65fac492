"""The trained model as users load it again: an ``nn.Module`` that takes images as they
are (float32 RGB, 0-255) and normalises them itself, logged as an MLflow model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import v2

from ignite_cls.config import setting
from ignite_cls.errors import one_line
from ignite_cls.models import build_model, load_weights

logger = logging.getLogger("ignite_cls")


def served_module(cfg: dict, state: dict, num_classes: int, source: str) -> nn.Module:
    """The config's architecture with ``state`` loaded, behind ``data.mean``/``data.std``
    normalisation, on the CPU, in eval mode."""
    arch = {**cfg["model"], "pretrained": None, "compile": False, "channels_last": False}
    network = build_model(arch, num_classes)
    load_weights(network, {k: v.cpu() for k, v in state.items()}, source)
    normalise = v2.Normalize(setting(cfg, "data.mean"), setting(cfg, "data.std"))
    return nn.Sequential(normalise, network).eval()


def log_served_model(
    cfg: dict, state: dict, source: str, classes: list[str], example: torch.Tensor
) -> None:
    """``state`` (weights from ``source``) as the open MLflow run's ``model``: it takes
    float32 RGB images (N, 3, H, W) on the 0-255 scale, like ``example``, and returns logits."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    served = served_module(cfg, state, len(classes), source)
    with torch.no_grad():
        logits = served(example)
    options = dict(
        name="model",
        signature=infer_signature(example.numpy(), logits.numpy()),
        input_example=example.numpy(),
        pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
        metadata={
            "classes": classes,
            "input": "float32 RGB images (N, 3, H, W), values 0-255; normalised inside",
            "output": "logits (N, number of classes)",
            "weights": Path(source).name,
        },
    )
    try:
        mlflow.pytorch.log_model(served, serialization_format="pt2", **options)
    except Exception as e:  # an architecture torch.export cannot trace
        logger.warning(f"mlflow: torch.export failed ({one_line(e)}); logging a pickle")
        mlflow.pytorch.log_model(served, serialization_format="pickle", **options)
