"""Periodic, best and resumable checkpoints, through Ignite's Checkpoint.

Periodic files are named by training progress (``epoch_3.pt``, mid-epoch
``epoch_4_iter_1600.pt``), the newest ``checkpoint.keep`` are kept, and the best by the
validation metric is ``best_<metric>_epoch_<n>.pt``. Each holds the model, optimizer, LR
scheduler, trainer state, grad scaler, RNG states, class names, the config and the MLflow
run id; both checkpointers' own lists travel too, so pruning carries on after a resume.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, global_step_from_engine

from ignite_cls.checkpoint_io import load_checkpoint, periodic_checkpoints, save_checkpoint
from ignite_cls.errors import UserError

logger = logging.getLogger("ignite_cls")


class DurableSaver(DiskSaver):
    """DiskSaver whose writes are fsynced before the atomic rename (survives power loss).

    Ignite's Checkpoint removes the oldest file *before* writing the new one; here removals
    wait until the new file is safely written, so a failed save (disk full, kill) never
    leaves fewer good checkpoints than before.
    """

    def __init__(self, dirname: str | Path):
        super().__init__(dirname, atomic=True, require_empty=False)
        self._pending_removals: list[str] = []

    def __call__(self, checkpoint: dict, filename: str, metadata: dict | None = None) -> None:
        if idist.get_rank() == self.save_on_rank:
            save_checkpoint(checkpoint, self.dirname / filename)
            for old in self._pending_removals:
                if old != filename:
                    (self.dirname / old).unlink(missing_ok=True)
        self._pending_removals.clear()

    def remove(self, filename: str) -> None:
        self._pending_removals.append(filename)


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


def _progress_name(engine: Engine, event: Any) -> str:
    if event == Events.EPOCH_COMPLETED:
        return f"epoch_{engine.state.epoch}"
    return f"epoch_{engine.state.epoch}_iter_{engine.state.iteration}"


def attach_checkpoints(
    trainer: Engine,
    evaluator: Engine | None,
    to_save: dict[str, Any],
    work_dir: Path,
    checkpoint_cfg: dict,
    max_epochs: int,
) -> dict[str, Checkpoint]:
    """Attach the periodic and (with an evaluator and ``save_best``) the best checkpointers.

    Returns them by name ("periodic", "best"); the best one is also added to ``to_save``.
    """
    saver = DurableSaver(work_dir)
    checkpointers: dict[str, Checkpoint] = {}
    metric = checkpoint_cfg["save_best"]
    if evaluator is not None and metric:
        best = Checkpoint(
            dict(to_save),
            saver,
            score_function=Checkpoint.get_default_score_fn(metric),
            score_name=metric.replace("/", "_"),
            n_saved=1,
            global_step_transform=global_step_from_engine(trainer, Events.EPOCH_COMPLETED),
            filename_pattern="best_{score_name}_epoch_{global_step}.{ext}",
        )
        evaluator.add_event_handler(Events.COMPLETED, best)
        to_save["best_checkpointer"] = best
        checkpointers["best"] = best

    periodic = Checkpoint(
        to_save,
        saver,
        score_function=lambda engine: engine.state.iteration,
        n_saved=checkpoint_cfg["keep"],
        global_step_transform=_progress_name,
        filename_pattern="{global_step}.{ext}",
        include_self=True,
    )
    interval = checkpoint_cfg["interval"]
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED(event_filter=lambda _, e: e % interval == 0 or e == max_epochs),
        periodic,
    )
    every = checkpoint_cfg["interval_iters"]
    if every:

        def mid_epoch(engine: Engine, iteration: int) -> bool:
            return iteration % every == 0 and iteration % engine.state.epoch_length != 0

        trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=mid_epoch), periodic)
    checkpointers["periodic"] = periodic
    return checkpointers


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
