"""Per-sample predictions of an evaluator run, gathered on rank 0 in dataset order, and the
``--out`` files (pickle, JSON, CSV by extension)."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from ignite_cls.checkpoint_io import atomic_write


class PredictionCollector:
    """Collects softmax scores per sample; after the run, rank 0 holds every sample once,
    sorted by dataset index (shards are unpadded, so nothing is counted twice)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.indices = torch.empty(0, dtype=torch.long)
        self.scores = torch.empty(0, num_classes)
        self.labels = torch.empty(0, dtype=torch.long)
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.STARTED, lambda _: self._parts.clear())
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        evaluator.add_event_handler(Events.COMPLETED, self._gather)

    def _collect(self, engine: Engine) -> None:
        out = engine.state.output
        if out is not None:  # None: a batch without a readable image
            probabilities = out["y_pred"].softmax(1).cpu()
            self._parts.append((out["index"].cpu(), probabilities, out["y"].cpu()))

    def _gather(self, engine: Engine) -> None:
        parts = self._parts or [(torch.empty(0), torch.empty(0, self.num_classes), torch.empty(0))]
        indices = torch.cat([p[0] for p in parts]).long()
        scores = torch.cat([p[1] for p in parts]).float()
        labels = torch.cat([p[2] for p in parts]).long()
        if idist.get_world_size() > 1:
            indices, scores, labels = _gather_unequal(indices, scores, labels)
        order = indices.argsort()
        self.indices, self.scores, self.labels = indices[order], scores[order], labels[order]

    def records(self, dataset: Any, classes: list[str]) -> list[dict[str, Any]]:
        """One record per sample: img_path, gt_label, pred_label, pred_score (all classes) and
        the class names gt_class, pred_class."""
        preds = self.scores.argmax(1)
        return [
            {
                "img_path": dataset.sample_name(int(i)),
                "gt_label": int(y),
                "pred_label": int(p),
                "gt_class": classes[int(y)],
                "pred_class": classes[int(p)],
                "pred_score": s.tolist(),
            }
            for i, y, p, s in zip(self.indices, self.labels, preds, self.scores, strict=True)
        ]


def _gather_unequal(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """all_gather tensors whose first dimension differs between ranks (pad, gather, trim)."""
    device = idist.device()
    count = torch.tensor([len(tensors[0])], device=device)
    counts = idist.all_gather(count).tolist()
    longest = max(counts)
    gathered = []
    for t in tensors:
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=device)
        padded[: len(t)] = t.to(device)
        every = idist.all_gather(padded).reshape(len(counts), longest, *t.shape[1:]).cpu()
        gathered.append(torch.cat([every[r, :n] for r, n in enumerate(counts)]))
    return gathered


def write_predictions(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write records in the format the extension names (in CSV, lists as JSON text)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(records[0]) if records else ["img_path"])
        writer.writeheader()
        for record in records:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()}
            )
        payload = text.getvalue().encode()
    elif suffix == ".json":
        payload = json.dumps(records, indent=1).encode()
    else:
        payload = pickle.dumps(records)
    atomic_write(path, lambda f: f.write(payload))


def write_metrics(path: str | Path, metrics: dict[str, float]) -> None:
    path = Path(path)
    if path.suffix.lower() == ".json":
        payload = (json.dumps(metrics, indent=2) + "\n").encode()
    else:
        payload = pickle.dumps(metrics)
    atomic_write(path, lambda f: f.write(payload))
