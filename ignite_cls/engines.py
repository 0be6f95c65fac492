"""Ignite engines: the training step, the evaluation step and the classification metrics.

Images arrive from the loaders as uint8 tensors; they are moved to the device without
blocking, turned into floats and normalised there (cheaper than doing it per sample on the
CPU). The training step returns the loss as a tensor still on the device, so nothing forces
a host-device synchronisation per iteration: handlers read it only when they log it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from ignite.engine import Engine
from ignite.metrics import (
    Accuracy,
    ConfusionMatrix,
    Fbeta,
    Loss,
    Precision,
    Recall,
    TopKCategoricalAccuracy,
)
from torch import nn

from ignite_cls.errors import UserError


@dataclass
class StepSettings:
    """What the step functions need besides the model: device, precision, normalisation."""

    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    amp_dtype: torch.dtype | None = None  # None: full precision
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg: dict, device: torch.device) -> StepSettings:
        amp = cfg["amp"]
        amp_dtype = None
        if amp["enabled"]:
            name = amp["dtype"] or ("float16" if device.type == "cuda" else "bfloat16")
            if name not in ("float16", "bfloat16"):
                raise UserError(f"amp.dtype must be float16 or bfloat16, got '{name}'")
            amp_dtype = getattr(torch, name)
        shape = (1, -1, 1, 1)
        return cls(
            device=device,
            mean=torch.tensor(cfg["data"]["mean"], device=device).view(shape),
            std=torch.tensor(cfg["data"]["std"], device=device).view(shape),
            amp_dtype=amp_dtype,
            channels_last=cfg["model"]["channels_last"],
        )

    @property
    def amp_mode(self) -> str:
        return "off" if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", "")

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )

    def prepare(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 images, labels and indices from the loader -> normalised float images on the device."""
        images, labels, indices = batch
        images = images.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True), indices


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
) -> Callable[[Engine | None, tuple], torch.Tensor]:
    """One optimisation step on a loader batch; returns the loss as a device tensor."""

    def train_step(engine: Engine | None, batch: tuple) -> torch.Tensor:
        model.train()
        images, labels, _ = settings.prepare(batch)
        with settings.autocast():
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss.detach()

    return train_step


def create_trainer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
) -> Engine:
    """The training engine; its output is the batch loss as a device tensor."""
    return Engine(make_train_step(model, optimizer, criterion, settings, scaler))


def create_evaluator(model: nn.Module, settings: StepSettings, num_classes: int) -> Engine:
    """The evaluation engine with every metric attached; its output is a dict with
    ``y_pred`` (float32 logits), ``y`` and ``index`` (dataset indices of the batch)."""

    @torch.no_grad()
    def eval_step(engine: Engine, batch) -> dict:
        model.eval()
        images, labels, indices = settings.prepare(batch)
        with settings.autocast():
            logits = model(images)
        return {"y_pred": logits.float(), "y": labels, "index": indices}

    evaluator = Engine(eval_step)
    for name, metric in build_metrics(num_classes, settings.device).items():
        metric.attach(evaluator, name)
    return evaluator


def _pred_and_label(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return output["y_pred"], output["y"]


def build_metrics(num_classes: int, device: torch.device) -> dict:
    """``accuracy/top1``, ``accuracy/top5`` (5+ classes), macro ``precision``/``recall``/``f1``,
    ``loss``, the confusion matrix and per-class precision and recall."""
    kw = dict(output_transform=_pred_and_label, device=device)
    per_class_precision = Precision(average=False, **kw)
    per_class_recall = Recall(average=False, **kw)
    metrics = {
        "accuracy/top1": Accuracy(**kw),
        "precision": Precision(average="macro", **kw),
        "recall": Recall(average="macro", **kw),
        "f1": Fbeta(1.0, precision=per_class_precision, recall=per_class_recall),
        "loss": Loss(nn.CrossEntropyLoss(), **kw),
        "confusion_matrix": ConfusionMatrix(num_classes, **kw),
        "per_class/precision": per_class_precision,
        "per_class/recall": per_class_recall,
    }
    if num_classes >= 5:
        metrics["accuracy/top5"] = TopKCategoricalAccuracy(5, **kw)
    return metrics


SCALAR_METRICS = ("accuracy/top1", "accuracy/top5", "precision", "recall", "f1", "loss")


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The one-number metrics of an evaluator run, as plain floats, in a fixed order."""
    return {name: float(metrics[name]) for name in SCALAR_METRICS if name in metrics}
