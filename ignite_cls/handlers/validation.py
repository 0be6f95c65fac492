"""Validation during training: run the evaluator every ``schedule.val_interval`` epochs and
after the last one, log the metrics and fire ``TrainEvents.VALIDATED`` on the trainer."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch.utils.data import DataLoader

from ignite_cls.config import setting
from ignite_cls.engines import TrainEvents, format_metric, scalar_metrics

logger = logging.getLogger("ignite_cls")


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {format_metric(name, value)}" for name, value in metrics.items())


def attach_validation(trainer: Engine, evaluator: Engine, loader: DataLoader, cfg: dict) -> None:
    """Handlers of ``TrainEvents.VALIDATED`` find the results in ``evaluator.state.metrics``."""
    interval = setting(cfg, "schedule.val_interval")
    max_epochs = setting(cfg, "schedule.max_epochs")

    def due(_: Engine, epoch: int) -> bool:
        return epoch % interval == 0 or epoch == max_epochs

    @trainer.on(Events.EPOCH_COMPLETED(event_filter=due))
    def validate(engine: Engine) -> None:
        evaluator.run(loader)
        metrics = scalar_metrics(evaluator.state.metrics)
        logger.info(f"epoch {engine.state.epoch} val: {format_metrics(metrics)}")
        engine.fire_event(TrainEvents.VALIDATED)
