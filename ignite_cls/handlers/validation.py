"""Validation during training: run the evaluator every ``schedule.val_interval`` epochs."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch.utils.data import DataLoader

from ignite_cls.engines import scalar_metrics

logger = logging.getLogger("ignite_cls")


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def attach_validation(
    trainer: Engine, evaluator: Engine, loader: DataLoader, interval: int, max_epochs: int
) -> None:
    """Validate every ``interval`` epochs and after the last one; results land in
    ``trainer.state.val_metrics`` (scalar metrics) and the log."""

    def due(_: Engine, epoch: int) -> bool:
        return epoch % interval == 0 or epoch == max_epochs

    @trainer.on(Events.EPOCH_COMPLETED(event_filter=due))
    def validate(engine: Engine) -> None:
        evaluator.run(loader)
        engine.state.val_metrics = scalar_metrics(evaluator.state.metrics)
        logger.info(f"epoch {engine.state.epoch} val: {format_metrics(engine.state.val_metrics)}")
