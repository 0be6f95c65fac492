"""Validation during training: run the evaluator (and the EMA model's, if any) every
``schedule.val_interval`` epochs and after the last one, log the metrics and fire
``TrainEvents.VALIDATED`` on the trainer. Its handlers (best checkpoint, early stopping,
MLflow) read ``Validation.metrics``: the model's as ``accuracy/top1``, the EMA model's as
``ema/accuracy/top1``."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch.utils.data import DataLoader

from ignite_cls.config import close_matches, setting
from ignite_cls.engines import (
    SCALAR_METRICS,
    TrainEvents,
    format_metric,
    scalar_metrics,
)
from ignite_cls.errors import UserError

logger = logging.getLogger("ignite_cls")


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {format_metric(name, value)}" for name, value in metrics.items())


class Validation:
    """The evaluators by metric prefix (``""`` for the model, ``"ema/"`` for its average)
    and the scalar metrics of the latest validation."""

    def __init__(self, evaluators: dict[str, Engine], loader: DataLoader, num_classes: int):
        self.evaluators = evaluators
        self.loader = loader
        self.metrics: dict[str, float] = {}
        own = [m for m in SCALAR_METRICS if m != "accuracy/top5" or num_classes >= 5]
        self.metric_names = [prefix + name for prefix in evaluators for name in own]

    def check_metric(self, key: str, name: str) -> None:
        """A config key naming a validation metric (``checkpoint.save_best``) names one."""
        if name not in self.metric_names:
            raise UserError(
                f"{key} '{name}' is not a validation metric{close_matches(name, self.metric_names)}"
                f" (this run validates {', '.join(self.metric_names)})"
            )

    def attach(self, trainer: Engine, cfg: dict) -> None:
        interval = setting(cfg, "schedule.val_interval")
        max_epochs = setting(cfg, "schedule.max_epochs")

        def due(_: Engine, epoch: int) -> bool:
            return epoch % interval == 0 or epoch == max_epochs

        trainer.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), self.validate)

    def validate(self, trainer: Engine) -> None:
        metrics = {}
        for prefix, evaluator in self.evaluators.items():
            evaluator.run(self.loader)
            found = scalar_metrics(evaluator.state.metrics)
            metrics |= {prefix + name: value for name, value in found.items()}
        self.metrics = metrics
        logger.info(f"epoch {trainer.state.epoch} val: {format_metrics(metrics)}")
        trainer.fire_event(TrainEvents.VALIDATED)
