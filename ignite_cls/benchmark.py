"""``python -m ignite_cls benchmark CONFIG``: where the time goes, and what Ignite costs.

Measured on the config's own model and data, in one process:
- data pipeline images/s (decode + augment + collate with the config's workers), and the same
  augmentations through torchvision's ImageFolder + PIL (folder datasets);
- model step images/s on synthetic batches already on the device;
- end-to-end training images/s through ignite_cls's trainer and through a plain hand-written
  loop with the same model, optimizer, AMP mode and loader;
- end-to-end test images/s through the evaluator (metrics, prediction collection) and a plain
  loop doing the same work;
- start-up: ``python -m ignite_cls --help`` against ``python -c "import torch"``;
- whole commands: ``train`` and ``test`` as separate processes, MLflow on, against
  ``benchmarks/plain.py`` doing the same work (``whole_command.py``).
Paired measurements alternate in A B B A order and report medians, so drift in the machine's
speed hits both sides alike; the data pipeline, fast next to a training step, is measured for
at least ``DATA_SECONDS`` each time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Events
from torch import nn
from torch.utils.data import DataLoader

from ignite_cls.compat import stop_loader_workers
from ignite_cls.data import build_data
from ignite_cls.data.transforms import build_transform
from ignite_cls.engines import StepSettings, create_evaluator, make_train_step
from ignite_cls.handlers.predictions import PredictionCollector
from ignite_cls.handlers.progress import setup_logging
from ignite_cls.job import Job
from ignite_cls.models import build_model
from ignite_cls.train import build_trainer
from ignite_cls.whole_command import whole_command_figures


class Clock:
    """Images per second from the end of the first step (start-up and worker spin-up
    excluded) to the end of the last, with the device synchronised at both marks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start = 0.0
        self.images = 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step(self, images: int) -> None:
        if self.start == 0.0:
            self.start = self._now()
        else:
            self.images += images

    def rate(self) -> float:
        return self.images / (self._now() - self.start)


DATA_SECONDS = 3.0


def _alternate(
    pairs: dict[str, Callable[[], float]], repeats: int, ratio: str | None = None
) -> dict[str, float]:
    """The median of each measurement; with ``ratio``, also the median over the repeats of
    first / second, each taken from two measurements made next to each other."""
    names = list(pairs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            results[name].append(pairs[name]())
    figures = {name: statistics.median(values) for name, values in results.items()}
    if ratio is not None and len(names) == 2:
        first, second = results[names[0]], results[names[1]]
        figures[ratio] = statistics.median(a / b for a, b in zip(first, second, strict=True))
    return figures


def _loader_rate(loader: DataLoader, steps: int, device: torch.device) -> float:
    """Images/s over at least ``steps`` batches and ``DATA_SECONDS`` (or the whole loader)."""
    clock = Clock(device)
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        clock.step(len(batch[1]))
        if i + 1 >= steps and time.perf_counter() - start >= DATA_SECONDS:
            break
    return clock.rate()


def _torchvision_loader(cfg: dict, pin_memory: bool) -> DataLoader | None:
    """ImageFolder + PIL with the config's augmentations, batch size and workers."""
    split = cfg["data"]["train"]
    if split["type"] != "folder" or split["ann_file"]:
        return None
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    steps = build_transform(split["pipeline"])
    pipeline = v2.Compose([steps, v2.PILToTensor()] if steps else [v2.PILToTensor()])
    dataset = ImageFolder(split["root"], transform=pipeline)
    return DataLoader(
        dataset,
        batch_size=split["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=split["num_workers"],
        persistent_workers=split["num_workers"] > 0,
        pin_memory=pin_memory,
    )


def _plain_train(model, optimizer, scheduler, criterion, settings, scaler, loader, steps) -> float:
    """The hand-written reference loop: the same work as the trainer, nothing else."""
    model.train()
    clock = Clock(settings.device)
    for i, batch in enumerate(loader):
        x, y, _ = settings.prepare(batch)
        with settings.autocast():
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        clock.step(len(y))
        if i + 1 == steps:
            break
    return clock.rate()


@torch.no_grad()
def _plain_test(model, settings, loader, steps) -> float:
    model.eval()
    clock = Clock(settings.device)
    correct, scores = 0, []
    for i, batch in enumerate(loader):
        x, y, _ = settings.prepare(batch)
        with settings.autocast():
            logits = model(x).float()
        correct += (logits.argmax(1) == y).sum()
        scores.append(logits.softmax(1).cpu())
        clock.step(len(y))
        if i + 1 == steps:
            break
    return clock.rate()


def _startup_seconds(args: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def run_benchmark(
    job: Job, steps: int, repeats: int, command_repeats: int, json_path: str | None
) -> dict[str, float]:
    # a constant LR: throughput does not depend on the schedule, and one sized for the
    # config's epochs (OneCycle) would run out within the benchmark's steps on small data
    schedule = {**job.cfg["schedule"], "lr_policy": {"type": "constant"}, "warmup_epochs": 0.0}
    cfg = {**job.cfg, "schedule": schedule}
    device = idist.device()
    setup_logging(None)
    torch.manual_seed(cfg["seed"])
    data = build_data(cfg, ["train", "test"], 0, 1, pin_memory=device.type == "cuda")
    train_set, train_loader = data["train"]
    test_loader = data["test"][1]
    steps = min(steps, len(train_loader))
    test_steps = min(steps, len(test_loader))
    num_classes = cfg["model"]["num_classes"] or len(train_set.classes)
    model = build_model(cfg["model"], num_classes).to(device)
    settings = StepSettings.from_config(cfg, device)
    training = build_trainer(cfg, model, train_loader, settings, num_classes, console=None)
    trainer, batch_size = training.trainer, cfg["data"]["train"]["batch_size"]
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["loss"]["label_smoothing"])

    def engine_rate(engine, loader, epoch_length) -> float:
        clock = Clock(device)
        handle = engine.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: clock.step(len(e.state.batch[1]))
        )
        engine.run(loader, max_epochs=1, epoch_length=epoch_length)
        handle.remove()
        return clock.rate()

    def plain_train() -> float:
        return _plain_train(
            model,
            training.optimizer,
            training.scheduler,
            criterion,
            settings,
            training.scaler,
            train_loader,
            steps,
        )

    evaluator = create_evaluator(model, settings, num_classes)
    PredictionCollector(num_classes).attach(evaluator)
    synthetic = (
        torch.randint(0, 256, (batch_size, *train_set[0][0].shape), dtype=torch.uint8).to(device),
        torch.randint(0, num_classes, (batch_size,)).to(device),
        torch.arange(batch_size),
    )

    step = make_train_step(model, training.optimizer, criterion, settings, training.scaler)

    def model_step() -> float:
        clock = Clock(device)
        for _ in range(steps):
            step(None, synthetic)
            clock.step(batch_size)
        return clock.rate()

    figures: dict[str, float] = {}
    tv_loader = _torchvision_loader(cfg, pin_memory=device.type == "cuda")
    pairs = {"data_img_s": lambda: _loader_rate(train_loader, steps, device)}
    if tv_loader is not None:
        pairs["torchvision_data_img_s"] = lambda: _loader_rate(tv_loader, steps, device)
    train_pair = {
        "train_img_s": lambda: engine_rate(trainer, train_loader, steps),
        "plain_train_img_s": plain_train,
    }
    test_pair = {
        "test_img_s": lambda: engine_rate(evaluator, test_loader, test_steps),
        "plain_test_img_s": lambda: _plain_test(model, settings, test_loader, test_steps),
    }
    try:
        figures |= _alternate(pairs, repeats, "data_ratio")
        figures |= _alternate({"model_img_s": model_step}, repeats)
        figures |= _alternate(train_pair, repeats, "train_ratio")
        figures |= _alternate(test_pair, repeats, "test_ratio")
    finally:
        stop_loader_workers(
            loader for loader in (train_loader, test_loader, tv_loader) if loader is not None
        )
    figures["help_s"] = _startup_seconds([sys.executable, "-m", "ignite_cls", "--help"])
    figures["import_torch_s"] = _startup_seconds([sys.executable, "-c", "import torch"])
    figures["startup_ratio"] = figures["import_torch_s"] / figures["help_s"]
    if command_repeats > 0:
        figures |= whole_command_figures(job, num_classes, command_repeats)
    print(format_report(figures))
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


RATIOS = {
    "train_ratio": "training: ignite_cls / plain loop",
    "test_ratio": "test: ignite_cls / plain loop",
    "data_ratio": "data: ignite_cls / ImageFolder+PIL",
    "startup_ratio": "start-up: import torch / --help",
    "train_wall_ratio": "whole train command: ignite_cls / plain.py",
    "test_wall_ratio": "whole test command: ignite_cls / plain.py",
}


def format_report(figures: dict[str, float]) -> str:
    rows = [f"{name:<24} {value:>12.2f}" for name, value in figures.items() if name not in RATIOS]
    rows += [f"{label:<40} {figures[key]:.3f}x" for key, label in RATIOS.items() if key in figures]
    return "\n".join(rows)
