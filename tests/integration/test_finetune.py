"""The fine-tuning config through the real command line: torchvision weights by name from
torch hub's cache (planted: nothing is downloaded), a new head for the data's classes, and a
frozen stem whose weights and BatchNorm statistics come out of training untouched, in the
model and in its average (EMA). The data are Fashion-MNIST's grayscale PNG folders, read as
RGB."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import ok, run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FINETUNE_CONFIG = ROOT / "configs" / "resnet50_finetune_folder.py"
STEM = ("conv1.", "bn1.")
VAL_LINE = re.compile(r"epoch (\d+) val: (.*)")
EPOCHS = 3


def planted_weights(torch_home: Path) -> dict[str, torch.Tensor]:
    """resnet18's IMAGENET1K_V1 file in ``torch_home``'s hub cache: a 1000-class model of
    another seed than training's, its stem BatchNorm moved off its initial values, so that
    a stem equal to it was loaded, not drawn."""
    torch.manual_seed(1234)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    for key in ("bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        state[key] = state[key] + 0.1 * torch.rand_like(state[key])
    state["bn1.num_batches_tracked"] = torch.tensor(1000)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    file = torch_home / "hub" / "checkpoints" / Path(url).name
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    return state


def validation_top1(log: str) -> dict[int, float]:
    """The model's validation top-1 by epoch (not its average's: ``ema/accuracy/top1``)."""
    found = {}
    for epoch, metrics in VAL_LINE.findall(log):
        values = dict(re.findall(r"(\S+) ([0-9.]+)", metrics))
        found[int(epoch)] = float(values["accuracy/top1"])
    return found


def test_finetuning_keeps_the_frozen_stem_and_learns_a_new_head(fashion_mnist_subset, tmp_path):
    root = fashion_mnist_subset(60, 20)
    torch_home = tmp_path / "torch"
    planted = planted_weights(torch_home)
    options = [
        "model.arch=resnet18",
        "model.pretrained=IMAGENET1K_V1",
        f"data.train.root={root / 'train'}",
        f"data.val.root={root / 'test'}",
        f"data.test.root={root / 'test'}",
        # RandomResizedCrop on the 28 px images, down to a quarter of one (not 8%): three
        # epochs from 600 images learn reliably then; runs of seeds 0-3 reach 64-68.5%
        "data.train.pipeline.0.size=32",
        "data.train.pipeline.0.scale=(0.25,1.0)",
        "data.val.pipeline.0.size=36",  # Resize
        "data.val.pipeline.1.size=32",  # CenterCrop
        "data.train.batch_size=32",
        "data.val.batch_size=100",
        "data.train.num_workers=0",  # two cores: decoding 28 px PNGs in the trainer is cheaper
        "data.val.num_workers=0",
        f"schedule.max_epochs={EPOCHS}",
        f"schedule.val_interval={EPOCHS}",
        "checkpoint.keep=1",
    ]
    start = time.perf_counter()
    result = ok(
        run_cli(
            "train",
            FINETUNE_CONFIG,
            "--work-dir",
            "work",
            "--cfg-options",
            *options,
            cwd=tmp_path,
            env={"TORCH_HOME": str(torch_home)},
        )
    )
    seconds = time.perf_counter() - start
    (log_file,) = (tmp_path / "work").glob("train_*.log")
    log = log_file.read_text()

    assert (
        f"model.pretrained IMAGENET1K_V1: 2 of {len(planted)} tensors left as initialised: "
        "fc.weight (shape [1000, 512] in the weights, [10, 512] here), "
        "fc.bias (shape [1000] in the weights, [10] here)"
    ) in log, result.stderr[-3000:]
    assert "model.freeze conv1, bn1: 9,536 parameters frozen, 11,172,106 trainable" in log

    checkpoint = torch.load(
        tmp_path / "work" / f"epoch_{EPOCHS}.pt", map_location="cpu", weights_only=True
    )
    stem = {k for k in planted if k.startswith(STEM)}
    assert len(stem) == 6  # conv1.weight, bn1's weight, bias and running statistics
    for weights in ("model", "ema_model"):
        trained = checkpoint[weights]
        unchanged = {k for k in planted if k in trained and torch.equal(trained[k], planted[k])}
        assert unchanged == stem, weights

    top1 = validation_top1(log)
    assert list(top1) == [EPOCHS], log[-3000:]
    assert top1[EPOCHS] >= 50.0, (top1, seconds)  # chance is 10% (sd 2 points on 200 images)
