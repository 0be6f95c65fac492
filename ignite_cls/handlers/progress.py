"""What a person watches: the log file, the training records, progress on the console.

Every ``log.interval`` iterations the ``TrainingLog`` makes a record (loss averaged over the
processes, lr, images/s over all processes), writes it to the log file and fires
``TrainEvents.RECORDED`` for the handlers that keep it (tracking). On a terminal, progress
is a tqdm bar with ETA (Ignite's ProgressBar); into a file (a Slurm ``.out`` file, nohup,
CI) it is plain whole lines, at most one per ``log.interval`` iterations and per
``LINE_SECONDS``, with images/s and ETA, since carriage-return redraws make such files
unreadable. Only rank 0 prints and writes; the loss is read (one host-device sync) only
every ``log.interval`` iterations.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from ignite_cls.compat import close_progress_bar
from ignite_cls.engines import TrainEvents

LOGGER_NAME = "ignite_cls"
LINE_SECONDS = 5.0  # plain progress lines: at most one per this many seconds

logger = logging.getLogger(LOGGER_NAME)


def _not_a_terminating_run(record: logging.LogRecord) -> bool:
    """Ignite logs the exception that ends a run, traceback text and all, before raising it;
    the entry point reports it (one line for a user error), so that log record is dropped."""
    return "run is terminating due to exception" not in record.getMessage()


def setup_logging(log_file: Path | None) -> logging.Logger:
    """The project logger: INFO to stderr, everything (with iteration records) to ``log_file``;
    warnings only off rank 0."""
    logging.getLogger("ignite.engine.engine.Engine").addFilter(_not_a_terminating_run)
    logger.handlers.clear()
    logger.propagate = False
    if idist.get_rank() != 0:
        logger.setLevel(logging.WARNING)
        return logger
    logger.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    return logger


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class TrainingLog:
    """The training records: ``record`` holds the latest (loss, lr, throughput) once
    ``TrainEvents.RECORDED`` has fired."""

    def __init__(self, optimizer: torch.optim.Optimizer, interval: int, images_per_iter: int):
        self.optimizer = optimizer
        self.interval = interval
        self.images_per_iter = images_per_iter
        self.record: dict[str, float] = {}
        self._since = (time.perf_counter(), 0)  # clock and iteration of the last record

    def attach(self, trainer: Engine, console: ConsoleProgress | None) -> None:
        """Make records on ``trainer`` and show them on ``console``."""
        trainer.add_event_handler(Events.EPOCH_STARTED, self._reset_clock)
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self._record)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._log_epoch)
        if console is not None:
            console.watch_training(trainer, self)

    def _reset_clock(self, engine: Engine) -> None:
        self._since = (time.perf_counter(), engine.state.iteration)

    def _record(self, engine: Engine) -> None:
        # the mean over every process's batch, as one process with the whole batch would log
        loss = (idist.all_reduce(engine.state.output.clone()) / idist.get_world_size()).item()
        now = time.perf_counter()
        then, iteration = self._since
        steps = engine.state.iteration - iteration
        throughput = steps * self.images_per_iter / max(now - then, 1e-9)
        self._since = (now, engine.state.iteration)
        lr = self.optimizer.param_groups[0]["lr"]
        self.record = {"loss": loss, "lr": lr, "throughput": throughput}
        logger.debug(
            f"epoch {engine.state.epoch} iter {engine.state.iteration}: loss {loss:.4f} "
            f"lr {lr:.3g} {throughput:.0f} img/s"
        )
        engine.fire_event(TrainEvents.RECORDED)

    def _log_epoch(self, engine: Engine) -> None:
        seconds = engine.state.times["EPOCH_COMPLETED"] or 0.0
        details = " ".join(f"{k} {v:.4g}" for k, v in self.record.items())
        logger.info(
            f"epoch {engine.state.epoch}/{engine.state.max_epochs} done in {seconds:.1f}s {details}"
        )


class ConsoleProgress:
    """Rank 0's progress on stderr: tqdm bars on a terminal, plain lines elsewhere.

    ``close`` ends the bars: Ignite closes a bar at the end of its epoch, and a run that
    ends in an exception would have tqdm redraw it at exit, after the message that says why
    the run stopped."""

    def __init__(self, terminal: bool | None = None):
        self.active = idist.get_rank() == 0
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bars: list[ProgressBar] = []
        self._last_line = -math.inf  # the first line is printed at once

    def watch_training(self, trainer: Engine, training_log: TrainingLog) -> None:
        """Called by ``TrainingLog.attach``: the bar updates on the event its record is made
        on, after it (Ignite's bars take built-in events only)."""
        if not self.active:
            return
        if self.terminal:
            bar = ProgressBar(persist=True, desc="train")
            bar.attach(
                trainer,
                output_transform=lambda _: training_log.record,
                event_name=Events.ITERATION_COMPLETED(every=training_log.interval),
            )
            self.bars.append(bar)
            return

        clock = self._clock(trainer)

        def line(engine: Engine) -> None:
            state = engine.state
            done_in_epoch = (state.iteration - 1) % state.epoch_length + 1
            elapsed = time.perf_counter() - clock["start"]
            total = state.epoch_length * state.max_epochs
            done = state.iteration - clock["first_iteration"]
            eta = elapsed / max(done, 1) * (total - state.iteration)
            record = training_log.record
            self._print(
                f"train epoch {state.epoch}/{state.max_epochs} "
                f"iter {done_in_epoch}/{state.epoch_length}: loss {record['loss']:.4f} "
                f"lr {record['lr']:.3g} {record['throughput']:.0f} img/s "
                f"elapsed {_clock(elapsed)} eta {_clock(eta)}"
            )

        trainer.add_event_handler(TrainEvents.RECORDED, line)

    def watch_evaluation(self, evaluator: Engine, images_per_iter: int) -> None:
        if not self.active:
            return
        if self.terminal:
            bar = ProgressBar(persist=False, desc="eval")
            bar.attach(evaluator)
            self.bars.append(bar)
            return
        clock = self._clock(evaluator)

        def line(engine: Engine) -> None:
            done, total = engine.state.iteration, engine.state.epoch_length
            elapsed = time.perf_counter() - clock["start"]
            rate = done * images_per_iter / max(elapsed, 1e-9)
            eta = elapsed / done * (total - done)
            self._print(
                f"eval {done}/{total}: {rate:.0f} img/s elapsed {_clock(elapsed)} eta {_clock(eta)}"
            )

        evaluator.add_event_handler(Events.ITERATION_COMPLETED, line)

    def _clock(self, engine: Engine) -> dict[str, float]:
        """When ``engine``'s run started and at which iteration (a resumed run starts late)."""
        clock = {"start": time.perf_counter(), "first_iteration": 0}

        def start(engine: Engine) -> None:
            clock.update(start=time.perf_counter(), first_iteration=engine.state.iteration)

        engine.add_event_handler(Events.STARTED, start)
        return clock

    def _print(self, text: str) -> None:
        now = time.perf_counter()
        if now - self._last_line >= LINE_SECONDS:
            self._last_line = now
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        for bar in self.bars:
            close_progress_bar(bar)


def log_skipped_images(dataset: Any) -> None:
    """With ``data.skip_bad_images``: say how many unreadable images were left out."""
    count = getattr(dataset, "skipped_count", 0)
    if count:
        examples = ", ".join(dataset.skipped_names[:3])
        logger.warning(f"skipped {count} unreadable image(s) (data.skip_bad_images): {examples}")
