"""The test run: checkpoint identity and the train run that wrote it, the test metrics, a
per-class table, the confusion matrix and the ``--out`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ignite_cls.config import setting
from ignite_cls.engines import scalar_metrics
from ignite_cls.tracking.records import (
    checkpoint_identity,
    common_params,
    common_tags,
    dataset_facts,
    per_class_table,
)
from ignite_cls.tracking.run import RunTracker


class TestTracker(RunTracker):
    """The test run: checkpoint identity, the test metrics, a per-class table, the confusion
    matrix and the ``--out`` file."""

    command = "test"

    def start(self, checkpoint: dict, test_set: Any, weights: str) -> None:
        """Open the run once the checkpoint and the test data are loaded; ``weights``: which
        of the checkpoint's weights are tested (``model`` or ``ema_model``)."""
        if not self.active:
            return
        cfg = self.job.cfg
        train_run = (checkpoint.get("run_state") or {}).get("mlflow_run_id")
        params, tags = checkpoint_identity(self.job.checkpoint, train_run)
        params |= {
            **common_params(self.job),
            "run.weights": weights,
            "dataset.test.size": len(test_set),
            "dataset.num_classes": len(test_set.classes),
        }
        split_cfg = cfg["data"]["test"]
        datasets = [("testing", split_cfg, split_cfg["split"], dataset_facts(test_set))]
        self._open(params, {**common_tags(self.job), **tags}, None, datasets)

    def log_results(self, metrics: dict[str, Any], classes: list[str]) -> None:
        """``metrics`` as the evaluator left them (scalars, per-class tensors, confusion matrix)."""
        if self.run_id is None:
            return
        scalars = scalar_metrics(metrics)
        self.log_metrics({f"test/{k}": v for k, v in scalars.items()}, step=0)
        self.flush()
        self.log_dict(scalars, "metrics/test_metrics.json")
        matrix = metrics["confusion_matrix"].cpu().numpy().astype(np.int64)
        self.log_text(per_class_table(metrics, classes, matrix), "metrics/per_class.csv")
        self.agent.send("confusion", matrix, classes)
        out = setting(self.job.cfg, "test.out")
        if out and Path(out).is_file():
            self.log_artifact(out, "outputs")
