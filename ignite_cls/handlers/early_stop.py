"""Early stopping (``schedule.early_stop``), through Ignite's EarlyStopping.

After each validation the watched metric is compared with the best so far; after
``patience`` validations without an improvement of more than ``min_delta`` the trainer
terminates, which ends the run normally (checkpoint, MLflow run FINISHED with the reason in
a tag). The counter, the best value and the reason travel in checkpoints, so a resumed run
keeps counting, and resuming a run that stopped says so instead of training on.
"""

from __future__ import annotations

import logging

from ignite.engine import Engine
from ignite.handlers import EarlyStopping

from ignite_cls.config import setting
from ignite_cls.engines import TrainEvents
from ignite_cls.handlers.validation import Validation

logger = logging.getLogger("ignite_cls")


class EarlyStop:
    """Watches ``Validation.metrics[metric]`` (lower is better for losses); ``reason`` says
    when and why training stopped, None while it runs on."""

    def __init__(self, cfg: dict, trainer: Engine, validation: Validation):
        self.metric = setting(cfg, "schedule.early_stop.metric")
        validation.check_metric("schedule.early_stop.metric", self.metric)
        self.patience = setting(cfg, "schedule.early_stop.patience")
        self.min_delta = setting(cfg, "schedule.early_stop.min_delta")
        self.stopping = EarlyStopping(
            patience=self.patience,
            score_function=lambda _: validation.metrics[self.metric],
            trainer=trainer,
            threshold=self.min_delta,
            mode="min" if self.metric.endswith("loss") else "max",
        )
        self.stopping.logger.setLevel(logging.WARNING)  # the reason is logged here, once
        self.reason: str | None = None
        trainer.add_event_handler(TrainEvents.VALIDATED, self._after_validation)

    def _after_validation(self, trainer: Engine) -> None:
        self.stopping(trainer)
        if trainer.should_terminate and self.reason is None:
            self.reason = (
                f"stopped early at epoch {trainer.state.epoch}: val/{self.metric} did not "
                f"improve by more than {self.min_delta:g} in {self.patience} validations "
                f"(best {self.stopping.best_score:.4g})"
            )
            logger.info(self.reason)

    def state_dict(self) -> dict:
        return {**self.stopping.state_dict(), "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        self.stopping.load_state_dict({k: v for k, v in state.items() if k != "reason"})
        self.reason = state["reason"]
