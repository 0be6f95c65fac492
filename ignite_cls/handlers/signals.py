"""SIGTERM (e.g. Slurm pre-emption) and Ctrl-C: finish the current iteration, write a
checkpoint, stop with ``Interrupted``.

With several processes the ranks agree on the iteration to stop at (a max all-reduce of the
flag every ``check_every`` iterations), so all of them stop at the same step and the
checkpoint matches it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from ignite_cls.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Turns the first SIGTERM/SIGINT into a checkpoint and a clean stop; a second one
    takes the default action (immediate exit)."""

    def __init__(self, save: Callable[[Engine], str | None], check_every: int = 1):
        self.save = save
        self.check_every = check_every
        self.signum = 0
        self._previous: dict[int, object] = {}

    def attach(self, trainer: Engine) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        every = 1 if idist.get_world_size() == 1 else self.check_every
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=every), self._maybe_stop)
        trainer.add_event_handler(Events.COMPLETED, lambda _: self.restore())

    def _on_signal(self, signum: int, frame) -> None:
        self.signum = signum
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _maybe_stop(self, engine: Engine) -> None:
        signum = self.signum
        if idist.get_world_size() > 1:
            signum = int(idist.all_reduce(torch.tensor(signum, device=idist.device()), op="MAX"))
        if not signum:
            return
        checkpoint = self.save(engine)
        self.restore()
        raise Interrupted(signum, engine.state.iteration, checkpoint)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
