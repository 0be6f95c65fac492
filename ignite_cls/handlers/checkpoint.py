"""Periodic, best and resumable checkpoints, through Ignite's Checkpoint.

Periodic files are named by training progress (``epoch_3.pt``, mid-epoch
``epoch_4_iter_1600.pt``), the newest ``checkpoint.keep`` are kept, and the best by the
validation metric is ``best_<metric>_epoch_<n>.pt``. Each holds the model, optimizer, LR
scheduler, trainer state, grad scaler, RNG states, class names, the config and the MLflow
run id; both checkpointers' own lists travel too, so pruning carries on after a resume.
``--resume`` (the ``resume`` key) is read here, by ``resume_training``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, global_step_from_engine
from ignite.handlers.checkpoint import BaseSaveHandler

from ignite_cls.checkpoint_io import load_checkpoint, periodic_checkpoints, save_checkpoint
from ignite_cls.config import setting
from ignite_cls.engines import TrainEvents
from ignite_cls.errors import UserError
from ignite_cls.handlers.validation import Validation

logger = logging.getLogger("ignite_cls")

BEST_PREFIX = "best_"  # the best checkpoint's file name starts so


class DurableSaver(BaseSaveHandler):
    """Saves on rank 0, atomically and durably (temp file, fsync, rename: survives a kill or
    a power loss), in the background: the checkpoint's tensors are copied (milliseconds) and
    training goes on while a writer thread puts them on disk, one file after the other.

    Ignite's Checkpoint removes the oldest file *before* writing the new one; here removals
    wait until the new file is safely written, so a failed save (disk full, kill) never
    leaves fewer good checkpoints than before. A failed write is raised by the next save or
    by ``wait``, which callers use before they read, name or report a checkpoint.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.on_written: list[Callable[[Path], None]] = []  # called in the writer thread
        self._pending_removals: list[str] = []
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._writes: list[Future] = []
        if idist.get_rank() == 0:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, checkpoint: dict, filename: str, metadata: dict | None = None) -> None:
        removals, self._pending_removals = self._pending_removals, []
        if idist.get_rank() != 0:
            return
        self._raise_failed()
        snapshot = _detached_copy(checkpoint)
        self._writes.append(self._writer.submit(self._write, snapshot, filename, removals))

    def _write(self, checkpoint: dict, filename: str, removals: list[str]) -> None:
        save_checkpoint(checkpoint, self.folder / filename)
        for old in removals:
            if old != filename:
                (self.folder / old).unlink(missing_ok=True)
        for callback in self.on_written:
            callback(self.folder / filename)

    def remove(self, filename: str) -> None:
        self._pending_removals.append(filename)

    def wait(self) -> None:
        """Block until every checkpoint handed over is on disk; raise a failed write."""
        for write in self._writes:
            write.exception()
        self._raise_failed()

    def _raise_failed(self) -> None:
        done = [w for w in self._writes if w.done()]
        self._writes = [w for w in self._writes if not w.done()]
        for write in done:
            if write.exception() is not None:
                raise write.exception()


def _detached_copy(value: Any) -> Any:
    """``value`` with every tensor copied to the CPU (state dicts hold the live tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _detached_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_detached_copy(v) for v in value)
    return value


class RunState:
    """The non-tensor half of a checkpoint: class names, config, MLflow run id, RNG states."""

    def __init__(self, classes: list[str], config: dict, mlflow_run_id: str | None = None):
        self.classes = list(classes)
        self.config = config
        self.mlflow_run_id = mlflow_run_id

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "classes": self.classes,
            "config": self.config,
            "mlflow_run_id": self.mlflow_run_id,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
                "numpy_pos": int(np_state[2]),
                "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["classes"]) != self.classes:
            raise UserError(
                f"checkpoint classes {state['classes'][:5]}... do not match the data's "
                f"{self.classes[:5]}... ({len(state['classes'])} vs {len(self.classes)})"
            )
        self.mlflow_run_id = state.get("mlflow_run_id")
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), rng["numpy_pos"]))
        random.setstate((3, tuple(int(v) for v in rng["python"]), None))


def _progress_name(engine: Engine, _: Any) -> str:
    """``epoch_<n>`` at the end of an epoch, else ``epoch_<n>_iter_<i>``: by the trainer's
    progress, not by the event (handlers fire events of their own in between)."""
    state = engine.state
    if state.iteration % state.epoch_length == 0:
        return f"epoch_{state.epoch}"
    return f"epoch_{state.epoch}_iter_{state.iteration}"


def last_checkpoint_path(checkpointer: Checkpoint | None) -> Path | None:
    """Where ``checkpointer`` wrote its newest file (None before it wrote one), once it is
    on disk."""
    if checkpointer is None or checkpointer.last_checkpoint is None:
        return None
    checkpointer.save_handler.wait()
    return checkpointer.save_handler.folder / checkpointer.last_checkpoint


@dataclass
class Checkpointers:
    """The attached checkpointers, and every object a checkpoint holds (``objects``: what
    the caller gave, plus the best checkpointer's own state so its ranking survives resume)."""

    periodic: Checkpoint
    best: Checkpoint | None
    objects: dict[str, Any]

    def wait(self) -> None:
        """Every checkpoint handed over is on disk (``DurableSaver.wait``)."""
        self.periodic.save_handler.wait()


def attach_checkpoints(
    trainer: Engine, validation: Validation | None, to_save: dict[str, Any], cfg: dict
) -> Checkpointers:
    """Attach the periodic checkpointer (``checkpoint.interval`` epochs, ``interval_iters``
    iterations, the last epoch, an early stop) and, with validation and
    ``checkpoint.save_best``, the best one (by any validation metric, ``ema/`` ones too),
    both into the work dir."""
    saver = DurableSaver(setting(cfg, "work_dir"))
    objects = dict(to_save)
    metric = setting(cfg, "checkpoint.save_best")
    best = None
    if validation is not None and metric:
        validation.check_metric("checkpoint.save_best", metric)
        best = Checkpoint(
            dict(to_save),
            saver,
            score_function=lambda _: validation.metrics[metric],
            score_name=metric.replace("/", "_"),
            n_saved=1,
            global_step_transform=global_step_from_engine(trainer, Events.EPOCH_COMPLETED),
            filename_pattern=BEST_PREFIX + "{score_name}_epoch_{global_step}.{ext}",
        )
        trainer.add_event_handler(TrainEvents.VALIDATED, best)
        objects["best_checkpointer"] = best

    periodic = Checkpoint(
        objects,
        saver,
        score_function=lambda engine: engine.state.iteration,
        n_saved=setting(cfg, "checkpoint.keep"),
        global_step_transform=_progress_name,
        filename_pattern="{global_step}.{ext}",
        include_self=True,
    )
    interval = setting(cfg, "checkpoint.interval")
    max_epochs = setting(cfg, "schedule.max_epochs")

    def due(engine: Engine, epoch: int) -> bool:
        return epoch % interval == 0 or epoch == max_epochs or bool(engine.should_terminate)

    trainer.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), periodic)
    every = setting(cfg, "checkpoint.interval_iters")
    if every:

        def mid_epoch(engine: Engine, iteration: int) -> bool:
            return iteration % every == 0 and iteration % engine.state.epoch_length != 0

        trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=mid_epoch), periodic)
    # include_self saves the periodic one's own state under "checkpointer"
    return Checkpointers(periodic, best, {**objects, "checkpointer": periodic})


def resume_training(cfg: dict, objects: dict[str, Any]) -> str | None:
    """With ``--resume`` (the ``resume`` key): load every object's state from the checkpoint
    it names (``auto``: the work dir's most progressed one); the source, or None."""
    resume = setting(cfg, "resume")
    if not resume:
        return None
    checkpoint, source = load_resume_checkpoint(resume, Path(setting(cfg, "work_dir")))
    restore(objects, checkpoint, source)
    return source


def load_resume_checkpoint(resume: str | bool, work_dir: Path) -> tuple[dict, str]:
    """The checkpoint to resume from and where it came from.

    ``resume`` True or "auto": the most progressed periodic checkpoint in the work dir that
    loads, falling back past broken ones (and saying so); else a path or URL.
    """
    if resume not in (True, "auto"):
        return load_checkpoint(resume), str(resume)
    candidates = periodic_checkpoints(work_dir)
    if not candidates:
        raise UserError(f"--resume: no checkpoint to resume from in {work_dir}")
    for path in candidates:
        try:
            return load_checkpoint(path), str(path)
        except UserError as e:
            logger.warning(f"skipping {path.name}: {e}; trying an older checkpoint")
    raise UserError(f"--resume: every checkpoint in {work_dir} is unreadable")


def restore(to_load: dict[str, Any], checkpoint: dict, source: str) -> None:
    """Load each object's state from the checkpoint (objects the checkpoint lacks keep theirs)."""
    missing = [k for k in ("model", "trainer", "run_state") if k not in checkpoint]
    if missing:
        raise UserError(
            f"{source} is not an ignite_cls training checkpoint (no {', '.join(missing)})"
        )
    Checkpoint.load_objects({k: v for k, v in to_load.items() if k in checkpoint}, checkpoint)
