"""Assemble and run one test process: checkpoint, data, model, evaluator, outputs."""

from __future__ import annotations

import json
import time

import ignite.distributed as idist

from ignite_cls.checkpoint_io import load_checkpoint, model_state, weights_key
from ignite_cls.compat import stop_loader_workers
from ignite_cls.config import setting
from ignite_cls.data import build_data
from ignite_cls.engines import StepSettings, create_evaluator, format_metric, scalar_metrics
from ignite_cls.errors import UserError
from ignite_cls.handlers.predictions import PredictionCollector, write_metrics, write_predictions
from ignite_cls.handlers.progress import ConsoleProgress, log_skipped_images, setup_logging
from ignite_cls.handlers.visualize import attach_visualizer, write_mistakes_grid
from ignite_cls.handlers.watchdog import StallWatchdog
from ignite_cls.job import Job
from ignite_cls.models import build_trained_model
from ignite_cls.tracking.testing import TestTracker
from ignite_cls.visualize.windows import require_display


def run_testing(job: Job) -> None:
    with TestTracker(job) as tracker:  # the MLflow run: opened once the inputs load, rank 0
        evaluate_checkpoint(job, tracker)


def evaluate_checkpoint(job: Job, tracker: TestTracker) -> None:
    cfg = job.cfg
    rank, world_size, device = idist.get_rank(), idist.get_world_size(), idist.device()
    work_dir = job.work_dir
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    log_file = work_dir / f"test_{stamp}.log"
    logger = setup_logging(log_file)
    if setting(cfg, "test.show"):
        require_display()  # on every rank: fail before loading anything

    checkpoint = load_checkpoint(job.checkpoint)
    use_ema = setting(cfg, "ema.use_for_inference")
    state = model_state(checkpoint, job.checkpoint, use_ema)
    weights = weights_key(checkpoint, use_ema)
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
    num_classes = setting(cfg, "model.num_classes") or len(classes)
    model = build_trained_model(cfg["model"], num_classes, state, job.checkpoint)
    model = idist.auto_model(model)
    tracker.start(checkpoint, test_set, weights)

    evaluator = create_evaluator(model, StepSettings.from_config(cfg, device), num_classes)
    collector = PredictionCollector(num_classes)
    collector.attach(evaluator)
    visualizer = attach_visualizer(evaluator, collector, test_set, classes, cfg["test"])
    console = ConsoleProgress()
    console.watch_evaluation(evaluator, setting(cfg, "data.test.batch_size") * world_size)
    logger.info(
        f"test: {job.checkpoint} ({weights} weights) on {len(test_set)} images, "
        f"{device} x{world_size}"
    )
    watchdog = StallWatchdog(setting(cfg, "dist.stall_timeout"), log_file if rank == 0 else None)
    if not setting(cfg, "test.show"):  # windows wait for the user (--wait-time 0: a key)
        watchdog.attach({"test": evaluator})
    try:
        evaluator.run(test_loader)
    finally:
        watchdog.stop()
        console.close()
        stop_loader_workers([test_loader])
    log_skipped_images(test_set)

    metrics = scalar_metrics(evaluator.state.metrics)
    if rank != 0:
        return
    logger.info(format_table(metrics))
    (work_dir / f"test_{stamp}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    grid = write_mistakes_grid(work_dir / f"mistakes_{stamp}.png", collector, test_set, classes)
    if grid is not None:
        logger.info(f"wrote the most confident mistakes to {grid}")
        tracker.log_artifact(grid, "plots")
    out, item = setting(cfg, "test.out"), setting(cfg, "test.out_item") or "pred"
    if out and item == "metrics":
        write_metrics(out, metrics)
    elif out:
        write_predictions(out, collector.records(test_set, classes))
    if out:
        logger.info(f"wrote {item} to {out}")
    tracker.log_results(evaluator.state.metrics, classes)
    for path in visualizer.files if visualizer else []:
        tracker.log_artifact(path, "predictions")


def format_table(metrics: dict[str, float]) -> str:
    """The metrics as a titled table (accuracy-like metrics in percent)."""
    width = max(len(name) for name in metrics)
    rows = ["test metrics:", f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    rows += [f"{name:<{width}}  {format_metric(name, value)}" for name, value in metrics.items()]
    return "\n".join(rows)
