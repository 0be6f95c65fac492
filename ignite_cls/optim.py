"""Optimizer and per-iteration learning-rate schedule, from the config."""

from __future__ import annotations

import inspect
import logging

import torch
from torch import nn
from torch.optim import lr_scheduler

from ignite_cls.config import close_matches
from ignite_cls.errors import UserError

logger = logging.getLogger("ignite_cls")

LR_POLICIES = ("constant", "step", "multistep", "cosine", "onecycle")


def effective_lr(cfg: dict, world_size: int) -> float:
    """The configured lr, scaled by the effective batch (world size x per-process batch x
    ``grad.accumulate``) / base batch with --auto-scale-lr."""
    lr = cfg["optimizer"]["lr"]
    scaling = cfg["auto_scale_lr"]
    if not scaling["enable"]:
        return lr
    base = scaling["base_batch_size"]
    if not base:
        raise UserError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config")
    total_batch = world_size * cfg["data"]["train"]["batch_size"] * cfg["grad"]["accumulate"]
    scaled = lr * total_batch / base
    logger.info(f"auto-scale-lr: lr {lr} x {total_batch} / {base} = {scaled:g}")
    return scaled


def build_optimizer(cfg: dict, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """``optimizer.type`` is any torch.optim class; the other keys are its arguments. Only
    trainable parameters are given to it: weight decay and momentum would move frozen ones."""
    args = dict(cfg["optimizer"])
    name = args.pop("type")
    names = [
        n
        for n, c in vars(torch.optim).items()
        if inspect.isclass(c)
        and issubclass(c, torch.optim.Optimizer)
        and c is not torch.optim.Optimizer
    ]
    if name not in names:
        raise UserError(f"unknown optimizer.type '{name}'{close_matches(name, names)}")
    cls = getattr(torch.optim, name)
    accepted = set(inspect.signature(cls).parameters) - {"params"}
    for key in args:
        if key not in accepted:
            raise UserError(
                f"optimizer {name} has no argument '{key}'{close_matches(key, accepted)}"
            )
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise UserError("model.freeze leaves no parameter to train")
    args["lr"] = lr
    return cls(trainable, **args)


def build_lr_scheduler(
    schedule: dict, optimizer: torch.optim.Optimizer, epoch_length: int
) -> lr_scheduler.LRScheduler:
    """A scheduler stepped every optimizer step (``epoch_length`` of them per epoch): the
    policy in epochs, converted to steps, after an optional linear warm-up."""
    policy = dict(schedule["lr_policy"])
    kind = policy.pop("type", "constant")
    total = schedule["max_epochs"] * epoch_length
    warmup = round(schedule["warmup_epochs"] * epoch_length)
    try:
        main = _policy(kind, policy, optimizer, epoch_length, total, warmup)
    except TypeError as e:
        raise UserError(f"schedule.lr_policy ({kind}): {e}") from e
    if warmup <= 0 or kind == "onecycle":
        return main
    warm = lr_scheduler.LinearLR(
        optimizer, start_factor=schedule["warmup_ratio"], end_factor=1.0, total_iters=warmup
    )
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def _policy(kind, args, optimizer, epoch_length, total, warmup) -> lr_scheduler.LRScheduler:
    if kind == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0, **args)
    if kind == "step":
        if "step_size" not in args:
            raise UserError("schedule.lr_policy type 'step' needs step_size (epochs)")
        step = args.pop("step_size")
        return lr_scheduler.StepLR(optimizer, step_size=step * epoch_length, **args)
    if kind == "multistep":
        milestones = [m * epoch_length - warmup for m in args.pop("milestones", [])]
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, **args)
    if kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), **args)
    if kind == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        if warmup:
            args.setdefault("pct_start", warmup / total)
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, **args)
    raise UserError(f"unknown schedule.lr_policy.type '{kind}'{close_matches(kind, LR_POLICIES)}")
