"""The reference for ``benchmark``'s whole-command figures: the work of ``ignite_cls train`` and
``test`` written the way a careful user writes it in plain PyTorch and torchvision: one
process, ImageFolder and a DataLoader, the usual augmentations, an evaluation and a
checkpoint each epoch, a log line each epoch. Nothing from ignite_cls is imported.

    python benchmarks/plain.py train SPEC.json
    python benchmarks/plain.py test SPEC.json CHECKPOINT

SPEC.json (written by ``ignite_cls benchmark`` from a config) names the model, the data, the
pipelines, the optimizer and the schedule. Log lines go to stderr and to
``<out>/plain_<command>.log``, with millisecond timestamps; the first and the last training
iteration are logged too, for the start-up and wrap-up times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

log = logging.getLogger("plain")


def setup_log(folder: Path, command: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(message)s")
    file_handler = logging.FileHandler(folder / f"plain_{command}.log", mode="w")
    for handler in (logging.StreamHandler(), file_handler):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def transform(steps: list[dict], mean: list[float], std: list[float]) -> v2.Compose:
    """The pipeline's torchvision steps, then float conversion and normalisation."""
    built = [getattr(v2, s["type"])(**{k: v for k, v in s.items() if k != "type"}) for s in steps]
    tail = [v2.ToDtype(torch.float32), v2.Normalize(mean, std)]
    return v2.Compose([v2.PILToTensor(), *built, *tail])


def build_model(spec: dict) -> nn.Module:
    model = torchvision.models.get_model(spec["arch"], num_classes=spec["num_classes"])
    if spec["cifar_stem"]:
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def loader(spec: dict, split: str, train: bool) -> DataLoader:
    part = spec[split]
    dataset = ImageFolder(part["root"], transform(part["pipeline"], spec["mean"], spec["std"]))
    workers = part["num_workers"]
    return DataLoader(
        dataset,
        batch_size=part["batch_size"],
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


@torch.no_grad()
def evaluate(model: nn.Module, data: DataLoader, device: torch.device) -> tuple[float, float]:
    model.eval()
    correct = total = 0
    loss = 0.0
    for images, labels in data:
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        logits = model(images)
        loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return 100.0 * correct / total, loss / total


def precision(spec: dict, device: torch.device) -> tuple:
    """Autocast and grad scaler for the spec's mixed precision (a disabled pair without)."""
    name = spec.get("amp")
    if name == "auto":
        name = "float16" if device.type == "cuda" else "bfloat16"
    dtype = getattr(torch, name) if name else None
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def train(spec: dict) -> None:
    out = Path(spec["out"])
    setup_log(out, "train")
    torch.manual_seed(spec["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_data, val_data = loader(spec, "train", True), loader(spec, "val", False)
    model = build_model(spec).to(device)
    options = dict(spec["optimizer"])
    optimizer = getattr(torch.optim, options.pop("type"))(model.parameters(), **options)
    criterion = nn.CrossEntropyLoss(label_smoothing=spec["label_smoothing"])
    autocast, scaler = precision(spec, device)
    epochs, steps = spec["epochs"], len(train_data)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        for step, (images, labels) in enumerate(train_data, 1):
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with autocast:
                loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if (epoch, step) in ((1, 1), (epochs, steps)):
                log.info(f"epoch {epoch} iteration {step}: loss {loss.item():.4f}")
        seconds = time.perf_counter() - start
        accuracy, val_loss = evaluate(model, val_data, device)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
            out / f"epoch_{epoch}.pt",
        )
        log.info(
            f"epoch {epoch}/{epochs}: {seconds:.1f}s, {steps * spec['train']['batch_size'] / seconds:.0f}"
            f" img/s, val accuracy {accuracy:.2f} loss {val_loss:.4f}"
        )


def test(spec: dict, checkpoint: str) -> None:
    out = Path(spec["out"])
    setup_log(out, "test")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(spec).to(device)
    model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True)["model"])
    accuracy, loss = evaluate(model, loader(spec, "test", False), device)
    (out / "plain_test.json").write_text(json.dumps({"accuracy/top1": accuracy, "loss": loss}))
    log.info(f"test accuracy {accuracy:.2f} loss {loss:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "test"])
    parser.add_argument("spec", type=Path)
    parser.add_argument("checkpoint", nargs="?")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    torch.set_num_threads(spec.get("threads") or os.cpu_count())
    if args.command == "train":
        train(spec)
    else:
        test(spec, args.checkpoint)


if __name__ == "__main__":
    main()
