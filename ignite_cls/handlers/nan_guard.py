"""Stop training when the loss stops being finite, naming the iteration, before any
checkpoint of the broken weights is written.

The check stays on the device (the iteration of the first non-finite loss is kept in a
device tensor), so it adds no host-device synchronisation per iteration; it is read when the
loss is logged and right before each checkpoint.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from ignite_cls.errors import UserError


class NanGuard:
    def __init__(self, checkpoint_hint: str, amp: bool):
        self.checkpoint_hint = checkpoint_hint
        self.advice = "try a lower optimizer.lr"
        if amp:
            self.advice += ", or train without --amp (--cfg-options amp.enabled=False)"
        self.first_bad: torch.Tensor | None = None

    def attach(self, trainer: Engine, check_events: list) -> None:
        """Track every iteration; check at each event in ``check_events`` (attach before the
        checkpointers on those events)."""
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._track)
        for event in check_events:
            trainer.add_event_handler(event, self.check)

    def _track(self, engine: Engine) -> None:
        loss = engine.state.output
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad_now = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad_now, engine.state.iteration, self.first_bad)

    def check(self, engine: Engine) -> None:
        if self.first_bad is None or int(self.first_bad) < 0:
            return
        raise UserError(
            f"loss became non-finite (nan or inf) at iteration {int(self.first_bad)}: training "
            f"stopped; the last good checkpoint is kept in {self.checkpoint_hint} ({self.advice})"
        )
