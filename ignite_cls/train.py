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

from ignite_cls.compat import stop_loader_workers
from ignite_cls.config import dump_config, setting
from ignite_cls.data import build_data
from ignite_cls.data.batch_augments import build_batch_augment
from ignite_cls.engines import (
    EMA_PREFIX,
    Accumulation,
    PendingGradients,
    StepSettings,
    TrainRecipe,
    create_evaluator,
    create_trainer,
)
from ignite_cls.errors import UserError
from ignite_cls.handlers.checkpoint import (
    RunState,
    attach_checkpoints,
    last_checkpoint_path,
    resume_training,
)
from ignite_cls.handlers.early_stop import EarlyStop
from ignite_cls.handlers.ema import ModelEma
from ignite_cls.handlers.nan_guard import NanGuard
from ignite_cls.handlers.progress import (
    ConsoleProgress,
    TrainingLog,
    log_skipped_images,
    setup_logging,
)
from ignite_cls.handlers.signals import GracefulStop
from ignite_cls.handlers.validation import Validation
from ignite_cls.handlers.watchdog import StallWatchdog
from ignite_cls.job import Job
from ignite_cls.models import build_model
from ignite_cls.optim import build_lr_scheduler, build_optimizer, effective_lr
from ignite_cls.tracking.training import TrainTracker
from ignite_cls.workdir import lock_work_dir


@dataclass
class Training:
    """The trainer and what it steps; handlers that save or resume need these objects."""

    trainer: Engine
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    accumulation: Accumulation
    nan_guard: NanGuard
    log: TrainingLog


def build_trainer(
    cfg: dict,
    model: nn.Module,
    train_loader: DataLoader,
    settings: StepSettings,
    num_classes: int,
    console: ConsoleProgress | None,
) -> Training:
    """The training engine with its per-iteration handlers: LR schedule, NaN guard, the
    sampler's epoch, the loss/lr/throughput records (shown on ``console``). Validation,
    checkpoints and tracking are attached by the caller."""
    rank, world_size = idist.get_rank(), idist.get_world_size()
    optimizer = build_optimizer(cfg, model, effective_lr(cfg, world_size))
    epoch_length = len(train_loader)
    accumulate = setting(cfg, "grad.accumulate")
    if accumulate < 1:
        raise UserError(f"grad.accumulate must be 1 or more, got {accumulate}")
    accumulation = Accumulation(accumulate, epoch_length)
    scheduler = build_lr_scheduler(cfg["schedule"], optimizer, accumulation.steps_per_epoch)
    scaler = settings.grad_scaler()
    criterion = nn.CrossEntropyLoss(label_smoothing=setting(cfg, "loss.label_smoothing"))
    recipe = TrainRecipe(
        accumulation,
        max_norm=setting(cfg, "grad.max_norm"),
        batch_augment=build_batch_augment(
            setting(cfg, "data.batch_augments"), num_classes, setting(cfg, "seed"), rank
        ),
    )
    trainer = create_trainer(model, optimizer, criterion, settings, scaler, recipe)
    steps = Events.ITERATION_COMPLETED(event_filter=accumulation.completes)
    trainer.add_event_handler(steps, lambda _: scheduler.step())

    log_interval = max(1, min(setting(cfg, "log.interval"), epoch_length))
    nan_guard = NanGuard(setting(cfg, "work_dir"), amp=settings.amp_dtype is not None)
    checks = [Events.EPOCH_COMPLETED, Events.ITERATION_COMPLETED(every=log_interval)]
    if setting(cfg, "checkpoint.interval_iters"):
        every = setting(cfg, "checkpoint.interval_iters")
        checks.append(Events.ITERATION_COMPLETED(every=every))
    nan_guard.attach(trainer, checks)

    @trainer.on(Events.EPOCH_STARTED)
    def _shuffle_for_epoch(engine: Engine) -> None:
        done_in_epoch = engine.state.iteration % engine.state.epoch_length
        train_loader.sampler.set_epoch(engine.state.epoch - 1, start_batch=done_in_epoch)

    batch = setting(cfg, "data.train.batch_size") * world_size
    training_log = TrainingLog(optimizer, log_interval, batch)
    training_log.attach(trainer, console)
    return Training(trainer, optimizer, scheduler, scaler, accumulation, nan_guard, training_log)


def run_training(job: Job) -> None:
    cfg = job.cfg
    rank, world_size, device = idist.get_rank(), idist.get_world_size(), idist.device()
    work_dir = job.work_dir
    if rank == 0:
        work_dir_lock = lock_work_dir(work_dir)  # noqa: F841  (held until the process ends)
        dump_config(cfg, work_dir / f"{job.config_stem}.py")
    log_file = work_dir / f"train_{time.strftime('%Y%m%d_%H%M%S')}.log"
    logger = setup_logging(log_file)
    manual_seed(setting(cfg, "seed") + rank)

    validate = setting(cfg, "schedule.validate")  # --no-validate sets it False
    splits = ["train", "val"] if validate else ["train"]
    data = build_data(cfg, splits, rank, world_size, pin_memory=device.type == "cuda")
    train_set, train_loader = data["train"]
    classes = train_set.classes
    num_classes = setting(cfg, "model.num_classes") or len(classes)

    model = idist.auto_model(build_model(cfg["model"], num_classes))
    settings = StepSettings.from_config(cfg, device)
    console = ConsoleProgress()
    training = build_trainer(cfg, model, train_loader, settings, num_classes, console)
    trainer, optimizer = training.trainer, training.optimizer
    epoch_length = len(train_loader)
    max_epochs = setting(cfg, "schedule.max_epochs")
    logger.info(
        f"train: {setting(cfg, 'model.arch')} on {device} x{world_size}, {len(train_set)} "
        f"images, {num_classes} classes, lr {optimizer.param_groups[0]['lr']:g}, "
        f"amp {settings.amp_mode}"
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: log_skipped_images(train_set))

    run_state = RunState(classes, cfg)
    to_save = {
        "model": model,
        "optimizer": optimizer,
        "lr_scheduler": training.scheduler,
        "trainer": trainer,
        "run_state": run_state,
    }
    if training.scaler is not None:
        to_save["scaler"] = training.scaler
    if training.accumulation.steps > 1:
        to_save["pending_gradients"] = PendingGradients(model)
    ema = None
    if setting(cfg, "ema.enabled"):
        ema = ModelEma(model, cfg, training.accumulation)
        ema.attach(trainer)
        to_save["ema_model"] = ema

    validation = early_stop = None
    evaluators = {}
    if validate:
        evaluators[""] = create_evaluator(model, settings, num_classes)
        if ema is not None:
            evaluators[EMA_PREFIX] = create_evaluator(ema.model, settings, num_classes)
        for evaluator in evaluators.values():
            console.watch_evaluation(evaluator, setting(cfg, "data.val.batch_size") * world_size)
        validation = Validation(evaluators, data["val"][1], num_classes)
        validation.attach(trainer, cfg)
        if setting(cfg, "schedule.early_stop.metric"):
            early_stop = EarlyStop(cfg, trainer, validation)
            to_save["early_stop"] = early_stop
    checkpointers = attach_checkpoints(trainer, validation, to_save, cfg)

    def save_now(engine: Engine) -> str:
        training.nan_guard.check(engine)
        checkpointers.periodic(engine)
        return str(last_checkpoint_path(checkpointers.periodic))

    GracefulStop(save_now, check_every=training.log.interval).attach(trainer)
    watchdog = StallWatchdog(setting(cfg, "dist.stall_timeout"), log_file if rank == 0 else None)
    watched = {"training": trainer}
    watched |= {("EMA " if prefix else "") + "validation": e for prefix, e in evaluators.items()}
    watchdog.attach(watched)

    source = resume_training(cfg, checkpointers.objects)
    if source is not None:
        logger.info(
            f"resumed from {source}: {trainer.state.epoch} epochs, "
            f"iteration {trainer.state.iteration} done"
        )
        if early_stop is not None and early_stop.reason:
            logger.info(
                f"nothing to train: this run {early_stop.reason} (to train on anyway: "
                "--cfg-options schedule.early_stop.metric=None)"
            )
            return
        if trainer.state.iteration >= max_epochs * epoch_length:
            # Ignite would silently start over from epoch 1 on a finished state
            logger.info(f"nothing to train: schedule.max_epochs is {max_epochs} (raise it)")
            return

    with TrainTracker(job, run_state) as tracker:  # the MLflow run: opened here, rank 0
        tracker.start(optimizer, data, settings.amp_mode)
        tracker.attach(trainer, training.log, validation, checkpointers, early_stop)
        try:
            trainer.run(train_loader, max_epochs=max_epochs, epoch_length=epoch_length)
        finally:
            watchdog.stop()
            console.close()
            stop_loader_workers(loader for _, loader in data.values())
            checkpointers.wait()  # whatever ended the run, what was handed over is on disk
