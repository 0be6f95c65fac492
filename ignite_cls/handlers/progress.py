"""What a person watches: the log file, loss/lr/throughput records and tqdm progress bars.

Only rank 0 prints and writes; the loss is read (one host-device sync) only every
``log.interval`` iterations.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

LOGGER_NAME = "ignite_cls"


def setup_logging(log_file: Path | None) -> logging.Logger:
    """The project logger: INFO to stderr, everything (with iteration records) to ``log_file``;
    warnings only off rank 0."""
    logger = logging.getLogger(LOGGER_NAME)
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


def attach_training_log(
    trainer: Engine, optimizer: torch.optim.Optimizer, interval: int, images_per_iter: int
) -> None:
    """Every ``interval`` iterations set ``trainer.state.train_log`` = loss (averaged over
    the processes), lr, throughput (images/s over all processes) and write it to the log.
    Other handlers attached to the same event after this one (progress bar, tracking) read
    it from there."""
    logger = logging.getLogger(LOGGER_NAME)
    last = {"time": time.perf_counter(), "iteration": 0}

    @trainer.on(Events.EPOCH_STARTED)
    def _reset_clock(engine: Engine) -> None:
        last.update(time=time.perf_counter(), iteration=engine.state.iteration)

    @trainer.on(Events.ITERATION_COMPLETED(every=interval))
    def _record(engine: Engine) -> None:
        # the mean over every process's batch, as one process with the whole batch would log
        loss = (idist.all_reduce(engine.state.output.clone()) / idist.get_world_size()).item()
        now = time.perf_counter()
        steps = engine.state.iteration - last["iteration"]
        throughput = steps * images_per_iter / max(now - last["time"], 1e-9)
        last.update(time=now, iteration=engine.state.iteration)
        engine.state.train_log = {
            "loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "throughput": throughput,
        }
        logger.debug(
            f"epoch {engine.state.epoch} iter {engine.state.iteration}: loss {loss:.4f} "
            f"lr {engine.state.train_log['lr']:.3g} {throughput:.0f} img/s"
        )

    @trainer.on(Events.EPOCH_COMPLETED)
    def _log_epoch(engine: Engine) -> None:
        record = getattr(engine.state, "train_log", {})
        seconds = engine.state.times["EPOCH_COMPLETED"] or 0.0
        details = " ".join(f"{k} {v:.4g}" for k, v in record.items())
        logger.info(
            f"epoch {engine.state.epoch}/{engine.state.max_epochs} done in {seconds:.1f}s {details}"
        )


def attach_progress_bars(
    trainer: Engine | None, evaluator: Engine | None, interval: int
) -> list[ProgressBar]:
    """tqdm bars with ETA (rank 0 only): training updated every ``interval`` iterations.

    Ignite closes a bar at the end of its epoch; a run that ends in an exception must pass
    the returned bars to ``close_progress_bars``, or the bar is redrawn at exit, after the
    message that says why the run stopped."""
    if idist.get_rank() != 0:
        return []
    bars = []
    if trainer is not None:
        bar = ProgressBar(persist=True, desc="train")
        bar.attach(
            trainer,
            output_transform=lambda _: trainer.state.train_log,
            event_name=Events.ITERATION_COMPLETED(every=interval),
        )
        bars.append(bar)
    if evaluator is not None:
        bar = ProgressBar(persist=False, desc="eval")
        bar.attach(evaluator)
        bars.append(bar)
    return bars


def close_progress_bars(bars: list[ProgressBar]) -> None:
    for bar in bars:
        if bar.pbar is not None:
            bar.pbar.close()
            bar.pbar = None


def log_skipped_images(dataset) -> None:
    """With ``data.skip_bad_images``: say how many unreadable images were left out."""
    count = getattr(dataset, "skipped_count", 0)
    if count:
        examples = ", ".join(dataset.skipped_names[:3])
        logging.getLogger(LOGGER_NAME).warning(
            f"skipped {count} unreadable image(s) (data.skip_bad_images): {examples}"
        )
