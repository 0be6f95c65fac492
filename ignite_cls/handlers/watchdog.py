"""The stall watchdog: a rank whose engines make no progress for ``dist.stall_timeout``
seconds ends the job, with every thread's stack written down, instead of hanging until the
process group's own timeout (NCCL's default: 30 minutes) with nothing saying where.

A frozen or deadlocked rank stops its peers too: they wait in the next collective. Each rank
watches its own engines from a thread; the first to notice writes its threads' stacks
(faulthandler) into the log (rank 0; the others onto stderr), prints
``error: rank R made no progress for N s ...`` and exits with ``STALL_EXIT``; the launcher
stops the rest of the job. The process group's timeout comes from the same key
(``process_group_timeout``), a minute longer, so the watchdog speaks first and a collective
waiting on a vanished peer still ends.
"""

from __future__ import annotations

import datetime
import faulthandler
import os
import sys
import threading
import time
from pathlib import Path

import ignite.distributed as idist
from ignite.engine import Engine, Events

STALL_EXIT = 3  # the exit code of a rank that stalled (it printed its own error line)
GRACE_SECONDS = 60  # how much longer the process group waits than the watchdog


def process_group_timeout(stall_timeout: float) -> datetime.timedelta:
    """``dist.stall_timeout`` as the process group's timeout: a minute longer."""
    return datetime.timedelta(seconds=stall_timeout + GRACE_SECONDS)


class StallWatchdog:
    """Ends this process when none of the attached engines completes an iteration for
    ``timeout`` seconds while one of them runs."""

    def __init__(self, timeout: float, log_file: Path | None):
        self.timeout = float(timeout)
        self.log_file = log_file
        self.last_beat = time.monotonic()
        self.last_step = "the start"
        self._running: set[int] = set()  # ids of the engines between STARTED and their end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def attach(self, engines: dict[str, Engine]) -> None:
        """Watch ``engines`` by name (``{"training": trainer, "validation": evaluator}``);
        the watch starts with the first engine to start."""
        for name, engine in engines.items():
            engine.add_event_handler(Events.STARTED, self._started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._beat, name)
            for end in (Events.COMPLETED, Events.TERMINATE):  # an exception: ``stop``
                engine.add_event_handler(end, self._ended)

    def _started(self, engine: Engine) -> None:
        self._running.add(id(engine))
        self.last_beat = time.monotonic()
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _ended(self, engine: Engine) -> None:
        self._running.discard(id(engine))
        self.last_beat = time.monotonic()

    def _beat(self, engine: Engine, name: str) -> None:
        self.last_beat = time.monotonic()
        self.last_step = f"{name} iteration {engine.state.iteration}"

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            idle = time.monotonic() - self.last_beat
            if self._running and idle >= self.timeout:
                self._stalled(idle)

    def _stalled(self, idle: float) -> None:
        rank = idist.get_rank()
        message = (
            f"rank {rank} made no progress for {idle:.0f} s after {self.last_step} "
            f"(dist.stall_timeout={self.timeout:g}): a rank of the job is stuck or stopped"
        )
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as log:
                log.write(f"error: {message}; the stacks of rank {rank}'s threads:\n")
                log.flush()
                faulthandler.dump_traceback(file=log, all_threads=True)
            message += f"; the stacks of its threads are in {self.log_file}"
        else:
            print(f"rank {rank}: the stacks of its threads:", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(STALL_EXIT)
