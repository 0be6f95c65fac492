"""The train run: params and datasets when it opens, the training records and validation
metrics as they come, and at the end the training curves, the best checkpoint and the best
model as an MLflow model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ignite_cls.config import setting
from ignite_cls.engines import TrainEvents
from ignite_cls.handlers.checkpoint import BEST_PREFIX, Checkpointers, last_checkpoint_path
from ignite_cls.handlers.early_stop import EarlyStop
from ignite_cls.handlers.validation import Validation
from ignite_cls.serving import prepare_served_model
from ignite_cls.tracking.records import common_params, common_tags, dataset_facts
from ignite_cls.tracking.run import RunTracker
from ignite_cls.visualize.png import png_bytes

CURVES = [
    "train/loss",
    "train/lr",
    "val/loss",
    "val/accuracy/top1",
    "val/accuracy/top5",
    "val/ema/loss",
    "val/ema/accuracy/top1",
]
EARLY_STOP_TAG = "ignite_cls.early_stop"


class TrainTracker(RunTracker):
    command = "train"

    def __init__(self, job: Any, run_state: Any):
        super().__init__(job)
        self.run_state = run_state

    def start(
        self,
        optimizer: torch.optim.Optimizer,
        data: dict[str, tuple[Any, Any]],
        amp_mode: str,
    ) -> None:
        """Open (or, on resume, re-open: call after the checkpoint is loaded) the run."""
        if not self.active:
            return
        cfg = self.job.cfg
        self.data = data
        self.classes = list(data["train"][0].classes)
        params = common_params(self.job)
        params.update(
            {
                "run.effective_lr": optimizer.defaults["lr"],
                "run.amp": amp_mode,
                "dataset.num_classes": setting(cfg, "model.num_classes") or len(self.classes),
                **{f"dataset.{split}.size": len(ds) for split, (ds, _) in data.items()},
            }
        )
        contexts = {"train": "training", "val": "validation"}
        datasets = [
            (contexts[split], cfg["data"][split], cfg["data"][split]["split"], dataset_facts(ds))
            for split, (ds, _) in data.items()
        ]
        self._open(params, common_tags(self.job), self.run_state.mlflow_run_id, datasets)
        self.run_state.mlflow_run_id = self.run_id

    def attach(
        self,
        trainer: Engine,
        training_log: Any,
        validation: Validation | None,
        checkpointers: Checkpointers,
        early_stop: EarlyStop | None = None,
    ) -> None:
        """Record ``training_log``'s records and ``validation``'s metrics as the trainer
        announces them (``TrainEvents``); buffered metrics go out at each epoch's start and at
        the end, with the reason of an early stop as a tag."""
        if self.run_id is None:
            return
        self.training_log, self.validation = training_log, validation
        self.early_stop = early_stop
        self.checkpointers = checkpointers
        self.model_source: Path | None = None  # the checkpoint of the prepared MLflow model
        if setting(self.job.cfg, "mlflow.log_model"):
            checkpointers.periodic.save_handler.on_written.append(self._on_checkpoint_written)
        trainer.add_event_handler(TrainEvents.RECORDED, self._on_record)
        trainer.add_event_handler(TrainEvents.VALIDATED, self._on_validated)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)
        trainer.add_event_handler(Events.COMPLETED, self._on_completed)

    def _on_record(self, engine: Engine) -> None:
        record = {f"train/{k}": v for k, v in self.training_log.record.items()}
        self.log_metrics(record, engine.state.iteration)

    def _on_validated(self, engine: Engine) -> None:
        metrics = self.validation.metrics
        self.log_metrics({f"val/{k}": v for k, v in metrics.items()}, engine.state.epoch)

    def _on_epoch(self, engine: Engine) -> None:
        seconds = engine.state.times["EPOCH_COMPLETED"]
        self.log_metrics({"train/epoch_time": seconds}, engine.state.epoch)

    def _on_epoch_started(self, engine: Engine) -> None:
        self.flush()  # the last epoch's metrics, validation included: one batch per epoch

    def _example_image(self) -> bytes:
        """An image of the validation set (else training) as PNG bytes: the model's example."""
        images = self.data.get("val", self.data["train"])[0]
        return png_bytes(images.load_rgb(0))

    def _on_checkpoint_written(self, path: Path) -> None:
        """A new best checkpoint: its MLflow model's files, written now (writer thread), so
        that the end of the run only logs them."""
        if not path.name.startswith(BEST_PREFIX):
            return
        try:
            self._prepare_model(path)
        except Exception:  # the end of the run tries again, and reports what fails then
            self.model_source = None

    def _prepare_model(self, checkpoint: Path) -> None:
        prepare_served_model(checkpoint, self._example_image(), self.agent.workspace / "model")
        self.model_source = checkpoint

    def _on_completed(self, engine: Engine) -> None:
        """The curves, the best checkpoint and the model: handed to the agent, which does
        the work while the command closes."""
        self.flush()
        if self.early_stop is not None and self.early_stop.reason:
            self.set_tag(EARLY_STOP_TAG, self.early_stop.reason)
        self.agent.send("curves", CURVES)
        best = last_checkpoint_path(self.checkpointers.best)
        if best is not None and setting(self.job.cfg, "mlflow.log_checkpoint"):
            self.log_artifact(best, "checkpoints")
        if setting(self.job.cfg, "mlflow.log_model"):
            # the best weights; the final ones when nothing was validated
            weights = best or last_checkpoint_path(self.checkpointers.periodic)
            if self.model_source != weights:
                self._prepare_model(weights)
            self.agent.send("model", str(self.agent.workspace / "model"), weights.name)
