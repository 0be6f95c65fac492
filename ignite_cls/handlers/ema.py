"""An exponential moving average of the weights (``ema.*``), through Ignite's EMAHandler.

The average is updated after every optimizer step (not every batch under gradient
accumulation). Its momentum warms up from ``ema.momentum_warmup`` to ``ema.momentum`` over
the first ``ema.warmup_iters`` optimizer steps, computed from the trainer's iteration, so a
resumed run carries on with the same momentum. Checkpoints hold it as ``ema_model``; `test`,
`predict`, `export` and the MLflow model use it (``ema.use_for_inference``).
"""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from torch import nn

from ignite_cls.config import setting
from ignite_cls.engines import Accumulation
from ignite_cls.errors import UserError

MOMENTUM = "ema_momentum"  # the trainer's state attribute EMAHandler reads


class ModelEma:
    """The averaged model (``model``) and its state as a checkpoint object."""

    def __init__(self, model: nn.Module, cfg: dict, accumulation: Accumulation):
        self.momentum = setting(cfg, "ema.momentum")
        self.momentum_warmup = setting(cfg, "ema.momentum_warmup")
        self.warmup_iters = setting(cfg, "ema.warmup_iters")
        for key, value in (("momentum", self.momentum), ("momentum_warmup", self.momentum_warmup)):
            if not 0 < value < 1:
                raise UserError(f"ema.{key} must be between 0 and 1 (exclusive), got {value}")
        self.accumulation = accumulation
        self.handler = EMAHandler(model, momentum=self.momentum)
        self.model = self.handler.ema_model
        self.online = self.handler.model  # the trained model, unwrapped from DDP
        # frozen parameters (model.freeze) are copied, not averaged: an average of equal
        # values is not always bit-equal to them
        pairs = zip(self.model.parameters(), self.online.parameters(), strict=True)
        self._frozen = [(mine, theirs) for mine, theirs in pairs if not theirs.requires_grad]
        self._loaded = False

    def momentum_at(self, step: int) -> float:
        """The momentum of optimizer step ``step`` (1-based): linear warm-up, then constant."""
        if step >= self.warmup_iters:
            return self.momentum
        progress = (step - 1) / max(1, self.warmup_iters - 1)
        return self.momentum_warmup + (self.momentum - self.momentum_warmup) * progress

    def attach(self, trainer: Engine) -> None:
        steps = Events.ITERATION_COMPLETED(event_filter=self.accumulation.completes)
        trainer.add_event_handler(Events.STARTED, self._start)
        trainer.add_event_handler(steps, self._set_momentum)
        self.handler.attach(trainer, name=MOMENTUM, event=steps, warn_if_exists=False)
        if self._frozen:
            trainer.add_event_handler(steps, self._copy_frozen)

    def _start(self, _: Engine) -> None:
        # a run resumed from a checkpoint without an average starts it from the loaded weights
        if not self._loaded:
            self.model.load_state_dict(self.online.state_dict())

    def _set_momentum(self, engine: Engine) -> None:
        step = self.accumulation.optimizer_steps(engine.state.iteration)
        setattr(engine.state, MOMENTUM, self.momentum_at(step))

    @torch.no_grad()
    def _copy_frozen(self, _: Engine) -> None:
        for mine, theirs in self._frozen:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
        self._loaded = True
