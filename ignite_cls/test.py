"""Assemble and run one test process: checkpoint, data, model, evaluator, outputs."""

from __future__ import annotations

import json
import time

import ignite.distributed as idist

from ignite_cls.checkpoint_io import load_checkpoint
from ignite_cls.data import build_data
from ignite_cls.engines import StepSettings, create_evaluator, scalar_metrics
from ignite_cls.errors import UserError
from ignite_cls.handlers.predictions import PredictionCollector, write_metrics, write_predictions
from ignite_cls.handlers.progress import attach_progress_bars, setup_logging
from ignite_cls.job import Job
from ignite_cls.models import build_model, load_weights


def run_testing(job: Job) -> None:
    cfg = job.cfg
    rank, world_size, device = idist.get_rank(), idist.get_world_size(), idist.device()
    work_dir = job.work_dir
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    logger = setup_logging(work_dir / f"test_{stamp}.log")

    checkpoint = load_checkpoint(job.checkpoint)
    state = checkpoint.get("model", checkpoint.get("state_dict"))
    if state is None:
        raise UserError(f"not a model checkpoint (no 'model' weights inside): {job.checkpoint}")
    test_set, test_loader = build_data(
        cfg, ["test"], rank, world_size, pin_memory=device.type == "cuda"
    )["test"]
    classes = list(test_set.classes)
    trained_classes = checkpoint.get("run_state", {}).get("classes")
    if trained_classes is not None and list(trained_classes) != classes:
        raise UserError(
            f"checkpoint classes ({len(trained_classes)}: {', '.join(trained_classes[:4])}, ...) "
            f"do not match the test data's ({len(classes)}: {', '.join(classes[:4])}, ...)"
        )
    num_classes = cfg["model"]["num_classes"] or len(classes)
    model = build_model({**cfg["model"], "pretrained": None}, num_classes)
    load_weights(model, state, job.checkpoint)
    model = idist.auto_model(model)

    evaluator = create_evaluator(model, StepSettings.from_config(cfg, device), num_classes)
    collector = PredictionCollector()
    collector.attach(evaluator)
    attach_progress_bars(None, evaluator, 1)
    logger.info(f"test: {job.checkpoint} on {len(test_set)} images, {device} x{world_size}")
    evaluator.run(test_loader)

    metrics = scalar_metrics(evaluator.state.metrics)
    if rank != 0:
        return
    logger.info(format_table(metrics))
    (work_dir / f"test_{stamp}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    out, item = cfg["test"]["out"], cfg["test"]["out_item"] or "pred"
    if out and item == "metrics":
        write_metrics(out, metrics)
    elif out:
        write_predictions(out, collector.records(test_set, classes))
    if out:
        logger.info(f"wrote {item} to {out}")


def format_table(metrics: dict[str, float]) -> str:
    width = max(len(name) for name in metrics)
    rows = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    rows += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
    return "\n".join(rows)
