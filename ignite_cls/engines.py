"""Ignite engines: the training step, the evaluation step, the trainer's own events and the
classification metrics.

Images arrive from the loaders as uint8 tensors; they are moved to the device without
blocking, turned into floats and normalised there (cheaper than doing it per sample on the
CPU). The training step returns the loss as a tensor still on the device, so nothing forces
a host-device synchronisation per iteration: handlers read it only when they log it.

Accuracy, precision, recall and F1 are in percent (94.82), as MMPretrain, timm and
torchvision's references report them; the loss is as computed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from ignite.engine import Engine, EventEnum
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

from ignite_cls.config import setting
from ignite_cls.data.batch_augments import BatchAugment
from ignite_cls.errors import UserError


class TrainEvents(EventEnum):
    """Events fired on the trainer by the handlers that produce what other handlers record:
    a new training record (``TrainingLog.record``) and fresh validation metrics."""

    RECORDED = "train_recorded"
    VALIDATED = "validated"


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
        """``--amp`` (``amp.enabled``) takes effect here: autocast to ``amp.dtype`` (float16
        on CUDA, bfloat16 on the CPU by default) and, for float16, a grad scaler."""
        amp_dtype = None
        if setting(cfg, "amp.enabled"):
            default = "float16" if device.type == "cuda" else "bfloat16"
            name = setting(cfg, "amp.dtype") or default
            if name not in ("float16", "bfloat16"):
                raise UserError(f"amp.dtype must be float16 or bfloat16, got '{name}'")
            if name == "float16" and device.type != "cuda":
                raise UserError(
                    f"amp.dtype=float16 needs a CUDA device, this run is on {device.type}: "
                    "leave amp.dtype unset (bfloat16 there) or set it to bfloat16"
                )
            amp_dtype = getattr(torch, name)
        shape = (1, -1, 1, 1)
        return cls(
            device=device,
            mean=torch.tensor(setting(cfg, "data.mean"), device=device).view(shape),
            std=torch.tensor(setting(cfg, "data.std"), device=device).view(shape),
            amp_dtype=amp_dtype,
            channels_last=setting(cfg, "model.channels_last"),
        )

    @property
    def amp_mode(self) -> str:
        return "off" if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", "")

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """float16 needs loss scaling (its range is small); bfloat16 and float32 do not."""
        if self.amp_dtype != torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)

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


@dataclass
class Accumulation:
    """Gradient accumulation (``grad.accumulate``): each epoch is cut into windows of
    ``steps`` batches (the last one shorter when the epoch does not divide), one optimizer
    step per window. Windows never span epochs, so every epoch ends on an optimizer step."""

    steps: int
    epoch_length: int

    def window(self, iteration: int) -> tuple[int, bool]:
        """The number of batches in the window of ``iteration`` (1-based, as Ignite counts)
        and whether that iteration completes it."""
        position = (iteration - 1) % self.epoch_length
        start = position - position % self.steps
        size = min(self.steps, self.epoch_length - start)
        return size, position + 1 == start + size

    def completes(self, _: Engine, iteration: int) -> bool:
        """An Ignite event filter: the iterations that end with an optimizer step."""
        return self.window(iteration)[1]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.epoch_length / self.steps)

    def optimizer_steps(self, iteration: int) -> int:
        """Optimizer steps taken once ``iteration`` iterations are done."""
        epochs, position = divmod(iteration, self.epoch_length)
        return epochs * self.steps_per_epoch + math.ceil(position / self.steps)


class PendingGradients:
    """The gradients of an unfinished accumulation window, as a checkpoint object, so that a
    checkpoint written mid-window (``checkpoint.interval_iters``, a signal) resumes exactly."""

    def __init__(self, model: nn.Module):
        self.parameters = [p for p in model.parameters() if p.requires_grad]

    def state_dict(self) -> dict:
        return {"grads": [p.grad for p in self.parameters]}

    def load_state_dict(self, state: dict) -> None:
        for parameter, grad in zip(self.parameters, state["grads"], strict=True):
            parameter.grad = None if grad is None else grad.to(parameter.device)


@dataclass
class TrainRecipe:
    """What a training step does besides forward, backward and step: accumulation
    (``grad.accumulate``), clipping (``grad.max_norm``), MixUp/CutMix (``data.batch_augments``)."""

    accumulation: Accumulation
    max_norm: float | None = None
    batch_augment: BatchAugment | None = None


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
    recipe: TrainRecipe | None = None,
) -> Callable[[Engine | None, tuple], torch.Tensor]:
    """One training iteration on a loader batch; returns the batch loss as a device tensor.
    Called without an engine (benchmarks), it is a whole optimizer step on its own."""
    recipe = recipe or TrainRecipe(Accumulation(1, 1))
    trained = [p for p in model.parameters() if p.requires_grad]

    def train_step(engine: Engine | None, batch: tuple) -> torch.Tensor:
        model.train()
        iteration = engine.state.iteration if engine is not None else 1
        images, targets, _ = settings.prepare(batch)
        if recipe.batch_augment is not None:
            images, targets = recipe.batch_augment(images, targets, iteration)
        window, completes = recipe.accumulation.window(iteration)
        # DDP averages gradients across processes once per window, not once per batch
        syncs = completes or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if syncs else model.no_sync():
            with settings.autocast():
                loss = criterion(model(images), targets)
            share = loss / window if window > 1 else loss
            (scaler.scale(share) if scaler is not None else share).backward()
        if completes:
            if recipe.max_norm is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not scaled ones
                nn.utils.clip_grad_norm_(trained, recipe.max_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return train_step


def create_trainer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
    recipe: TrainRecipe,
) -> Engine:
    """The training engine, with ``TrainEvents`` registered; its output is the batch loss as
    a device tensor."""
    trainer = Engine(make_train_step(model, optimizer, criterion, settings, scaler, recipe))
    trainer.register_events(*TrainEvents)
    return trainer


def create_evaluator(model: nn.Module, settings: StepSettings, num_classes: int | None) -> Engine:
    """The evaluation engine, with every metric attached (none without ``num_classes``, as
    for unlabelled images); its output is a dict with ``y_pred`` (float32 logits), ``y``
    and ``index`` (dataset indices of the batch), or None for a batch that had no readable
    image."""

    @torch.no_grad()
    def eval_step(engine: Engine, batch) -> dict | None:
        if batch is None:
            return None
        model.eval()
        images, labels, indices = settings.prepare(batch)
        with settings.autocast():
            logits = model(images)
        return {"y_pred": logits.float(), "y": labels, "index": indices}

    evaluator = Engine(eval_step)
    if num_classes is not None:
        for name, metric in build_metrics(num_classes, settings.device).items():
            metric.attach(evaluator, name)
    return evaluator


def _pred_and_label(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return output["y_pred"], output["y"]


def build_metrics(num_classes: int, device: torch.device) -> dict:
    """``accuracy/top1``, ``accuracy/top5`` (5+ classes), macro ``precision``/``recall``/``f1``
    (all in percent), ``loss``, the confusion matrix and per-class precision and recall
    (fractions, per class)."""
    kw = dict(output_transform=_pred_and_label, device=device)
    per_class_precision = Precision(average=False, **kw)
    per_class_recall = Recall(average=False, **kw)
    metrics = {
        "accuracy/top1": Accuracy(**kw) * 100,
        "precision": Precision(average="macro", **kw) * 100,
        "recall": Recall(average="macro", **kw) * 100,
        "f1": Fbeta(1.0, precision=per_class_precision, recall=per_class_recall) * 100,
        "loss": Loss(nn.CrossEntropyLoss(), **kw),
        "confusion_matrix": ConfusionMatrix(num_classes, **kw),
        "per_class/precision": per_class_precision,
        "per_class/recall": per_class_recall,
    }
    if num_classes >= 5:
        metrics["accuracy/top5"] = TopKCategoricalAccuracy(5, **kw) * 100
    return metrics


SCALAR_METRICS = ("accuracy/top1", "accuracy/top5", "precision", "recall", "f1", "loss")
PERCENT_METRICS = frozenset(SCALAR_METRICS) - {"loss"}
EMA_PREFIX = "ema/"  # the EMA model's validation metrics: ema/accuracy/top1


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The one-number metrics of an evaluator run, as plain floats, in a fixed order."""
    return {name: float(metrics[name]) for name in SCALAR_METRICS if name in metrics}


def format_metric(name: str, value: float) -> str:
    """Percentages with two decimals (94.82), the loss with four (``ema/`` ones alike)."""
    return f"{value:.2f}" if name.removeprefix(EMA_PREFIX) in PERCENT_METRICS else f"{value:.4f}"
