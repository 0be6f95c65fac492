"""Assemble and run one ``predict`` process: the inputs, the checkpoint's model, an engine
over this process's share of the images, the rows gathered on rank 0."""

from __future__ import annotations

import time

import ignite.distributed as idist

from ignite_cls.compat import stop_loader_workers
from ignite_cls.config import setting
from ignite_cls.data.inputs import InputImages, collate_readable, expand_inputs
from ignite_cls.data.loaders import build_loader
from ignite_cls.engines import create_evaluator
from ignite_cls.handlers.predictions import PredictionCollector, write_predictions
from ignite_cls.handlers.progress import ConsoleProgress, log_skipped_images, setup_logging
from ignite_cls.inference import Classifier, top_predictions
from ignite_cls.job import Job
from ignite_cls.tracking.predicting import PredictTracker

TABLE_ROWS = 20  # rows printed without --out


def run_prediction(job: Job) -> None:
    with PredictTracker(job) as tracker:  # the MLflow run: opened once the inputs load, rank 0
        predict_inputs(job, tracker)


def predict_inputs(job: Job, tracker: PredictTracker) -> None:
    cfg = job.cfg
    rank, world_size, device = idist.get_rank(), idist.get_world_size(), idist.device()
    logger = setup_logging(job.work_dir / f"predict_{time.strftime('%Y%m%d_%H%M%S')}.log")
    paths = expand_inputs(job.inputs)
    classifier = Classifier.from_checkpoint(job.checkpoint, cfg, device)
    model = idist.auto_model(classifier.model)
    images = InputImages(
        paths, classifier.classes, classifier.transform, setting(cfg, "data.skip_bad_images")
    )
    loader = build_loader(
        images,
        cfg["data"]["test"],
        train=False,
        seed=setting(cfg, "seed"),
        rank=rank,
        world_size=world_size,
        pin_memory=device.type == "cuda",
        collate_fn=collate_readable,
    )
    tracker.start(job.checkpoint, classifier.train_run_id, len(paths))
    engine = create_evaluator(model, classifier.settings, num_classes=None)
    collector = PredictionCollector(len(classifier.classes))
    collector.attach(engine)
    console = ConsoleProgress()
    console.watch_evaluation(engine, setting(cfg, "data.test.batch_size") * world_size)
    logger.info(f"predict: {job.checkpoint} on {len(paths)} images, {device} x{world_size}")
    try:
        engine.run(loader)
    finally:
        console.close()
        stop_loader_workers([loader])
    log_skipped_images(images)
    if rank != 0:
        return
    rows = top_predictions(collector.scores, classifier.classes, setting(cfg, "predict.topk"))
    rows = [
        {"img_path": images.sample_name(int(index)), **row}
        for index, row in zip(collector.indices, rows, strict=True)
    ]
    out = setting(cfg, "predict.out")
    if out:
        write_predictions(out, rows)
        logger.info(f"wrote {len(rows)} predictions to {out}")
        tracker.log_artifact(out, "outputs")
    else:
        logger.info(format_rows(rows))


def format_rows(rows: list[dict]) -> str:
    """The first ``TABLE_ROWS`` predictions as a table: path, class, score."""
    shown = rows[:TABLE_ROWS]
    width = max([len("image"), *(len(row["img_path"]) for row in shown)])
    lines = [f"{'image':<{width}}  {'class':<16}  score"]
    lines += [f"{r['img_path']:<{width}}  {r['class']:<16}  {r['score']:.4f}" for r in shown]
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more (write them all with --out FILE)")
    return "\n".join(lines)
