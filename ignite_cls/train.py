"""Assemble and run one training process: data, model, optimizer, engines, handlers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.utils import manual_seed
from torch import nn
from torch.utils.data import DataLoader

from ignite_cls.config import dump_config
from ignite_cls.data import build_data
from ignite_cls.data.loaders import stop_loader_workers
from ignite_cls.engines import StepSettings, create_evaluator, create_trainer
from ignite_cls.handlers.checkpoint import (
    RunState,
    attach_checkpoints,
    load_resume_checkpoint,
    restore,
)
from ignite_cls.handlers.nan_guard import NanGuard
from ignite_cls.handlers.progress import (
    attach_progress_bars,
    attach_training_log,
    close_progress_bars,
    log_skipped_images,
    setup_logging,
)
from ignite_cls.handlers.signals import GracefulStop
from ignite_cls.handlers.tracking import TrainTracker
from ignite_cls.handlers.validation import attach_validation
from ignite_cls.job import Job
from ignite_cls.models import build_model
from ignite_cls.optim import build_lr_scheduler, build_optimizer, effective_lr
from ignite_cls.workdir import lock_work_dir


@dataclass
class Training:
    """The trainer and what it steps; handlers that save or resume need these objects."""

    trainer: Engine
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    nan_guard: NanGuard
    log_interval: int


def build_trainer(
    cfg: dict,
    model: nn.Module,
    train_loader: DataLoader,
    settings: StepSettings,
    world_size: int,
    checkpoint_hint: str,
) -> Training:
    """The training engine with its per-iteration handlers: LR schedule, NaN guard, the
    sampler's epoch, loss/lr/throughput records. (Validation, checkpoints and tracking are
    attached by the caller.)"""
    optimizer = build_optimizer(cfg, model, effective_lr(cfg, world_size))
    epoch_length = len(train_loader)
    scheduler = build_lr_scheduler(cfg["schedule"], optimizer, epoch_length)
    scaler = torch.amp.GradScaler("cuda") if settings.amp_dtype == torch.float16 else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["loss"]["label_smoothing"])
    trainer = create_trainer(model, optimizer, criterion, settings, scaler)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: scheduler.step())

    log_interval = max(1, min(cfg["log"]["interval"], epoch_length))
    nan_guard = NanGuard(checkpoint_hint)
    checks = [Events.EPOCH_COMPLETED, Events.ITERATION_COMPLETED(every=log_interval)]
    if cfg["checkpoint"]["interval_iters"]:
        checks.append(Events.ITERATION_COMPLETED(every=cfg["checkpoint"]["interval_iters"]))
    nan_guard.attach(trainer, checks)

    @trainer.on(Events.EPOCH_STARTED)
    def _shuffle_for_epoch(engine: Engine) -> None:
        done_in_epoch = engine.state.iteration % engine.state.epoch_length
        train_loader.sampler.set_epoch(engine.state.epoch - 1, start_batch=done_in_epoch)

    batch = cfg["data"]["train"]["batch_size"] * world_size
    attach_training_log(trainer, optimizer, log_interval, batch)
    return Training(trainer, optimizer, scheduler, scaler, nan_guard, log_interval)


def run_training(job: Job) -> None:
    cfg = job.cfg
    rank, world_size, device = idist.get_rank(), idist.get_world_size(), idist.device()
    work_dir = job.work_dir
    if rank == 0:
        work_dir_lock = lock_work_dir(work_dir)  # noqa: F841  (held until the process ends)
        dump_config(cfg, work_dir / f"{job.config_stem}.py")
    logger = setup_logging(work_dir / f"train_{time.strftime('%Y%m%d_%H%M%S')}.log")
    manual_seed(cfg["seed"] + rank)

    validate = cfg["schedule"]["validate"]
    data = build_data(
        cfg,
        ["train", "val"] if validate else ["train"],
        rank,
        world_size,
        pin_memory=device.type == "cuda",
    )
    train_set, train_loader = data["train"]
    classes = train_set.classes
    num_classes = cfg["model"]["num_classes"] or len(classes)

    model = idist.auto_model(build_model(cfg["model"], num_classes))
    settings = StepSettings.from_config(cfg, device)
    training = build_trainer(cfg, model, train_loader, settings, world_size, str(work_dir))
    trainer, optimizer, scheduler = training.trainer, training.optimizer, training.scheduler
    scaler, nan_guard, log_interval = training.scaler, training.nan_guard, training.log_interval
    epoch_length = len(train_loader)
    max_epochs = cfg["schedule"]["max_epochs"]
    logger.info(
        f"train: {cfg['model']['arch']} on {device} x{world_size}, {len(train_set)} images, "
        f"{num_classes} classes, lr {optimizer.param_groups[0]['lr']:g}, amp {settings.amp_mode}"
    )

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: log_skipped_images(train_set))

    evaluator = None
    if validate:
        evaluator = create_evaluator(model, settings, num_classes)
        attach_validation(
            trainer, evaluator, data["val"][1], cfg["schedule"]["val_interval"], max_epochs
        )
    bars = attach_progress_bars(trainer, evaluator, log_interval)

    run_state = RunState(classes, cfg)
    to_save = {
        "model": model,
        "optimizer": optimizer,
        "lr_scheduler": scheduler,
        "trainer": trainer,
        "run_state": run_state,
    }
    if scaler is not None:
        to_save["scaler"] = scaler
    periodic = attach_checkpoints(
        trainer, evaluator, to_save, work_dir, cfg["checkpoint"], max_epochs
    )["periodic"]

    def save_now(engine) -> str:
        nan_guard.check(engine)
        periodic(engine)
        return str(periodic.last_checkpoint)  # already under the work dir

    GracefulStop(save_now, check_every=log_interval).attach(trainer)

    if cfg["resume"]:
        checkpoint, source = load_resume_checkpoint(cfg["resume"], work_dir)
        restore(to_save, checkpoint, source)
        logger.info(
            f"resumed from {source}: {trainer.state.epoch} epochs, "
            f"iteration {trainer.state.iteration} done"
        )
        if trainer.state.iteration >= max_epochs * epoch_length:
            # Ignite would silently start over from epoch 1 on a finished state
            logger.info(f"nothing to train: schedule.max_epochs is {max_epochs} (raise it)")
            return

    with TrainTracker(job, run_state) as tracker:  # the MLflow run: opened here, rank 0
        best = to_save.get("best_checkpointer")
        tracker.start(trainer, model, optimizer, data, best, settings.amp_mode)
        try:
            trainer.run(train_loader, max_epochs=max_epochs, epoch_length=epoch_length)
        finally:
            close_progress_bars(bars)
            stop_loader_workers(loader for _, loader in data.values())
