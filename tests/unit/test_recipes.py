"""The training recipe's parts, on real data (scikit-learn's digits): gradient accumulation
and the LR schedule counting optimizer steps, clipping, MixUp/CutMix, the EMA momentum."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import QUICKSTART
from ignite.engine import Engine
from torch import nn

from ignite_cls.config import load_config, with_defaults
from ignite_cls.data import build_data
from ignite_cls.data.batch_augments import build_batch_augment
from ignite_cls.engines import Accumulation, StepSettings, TrainRecipe, make_train_step
from ignite_cls.errors import UserError
from ignite_cls.handlers.ema import ModelEma
from ignite_cls.models import freeze
from ignite_cls.optim import build_lr_scheduler, effective_lr
from ignite_cls.train import build_trainer


def digits_config(tmp_path: Path, **sections: dict) -> dict:
    cfg = load_config(QUICKSTART)
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    cfg = with_defaults(cfg)
    cfg["work_dir"] = str(tmp_path)
    cfg["data"]["train"]["pipeline"] = cfg["data"]["train"]["pipeline"][:1]  # resize only
    return cfg


def mlp() -> nn.Module:
    """No batch norm, no dropout: a batch's gradient is the mean of its parts' gradients."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Linear(32, 10))


def train_steps(cfg: dict, iterations: int) -> tuple[nn.Module, object]:
    _, loader = build_data(cfg, ["train"], 0, 1, pin_memory=False)["train"]
    model = mlp()
    settings = StepSettings.from_config(cfg, torch.device("cpu"))
    training = build_trainer(cfg, model, loader, settings, 10, console=None)
    training.trainer.run(loader, max_epochs=1, epoch_length=iterations)
    return model, training


def test_four_accumulated_batches_of_16_equal_one_batch_of_64(tmp_path):
    schedule = dict(lr_policy=dict(type="constant"), warmup_epochs=0.0)
    whole_cfg = digits_config(tmp_path, schedule=schedule)
    whole_cfg["data"]["train"]["batch_size"] = 64
    parts_cfg = copy.deepcopy(whole_cfg)
    parts_cfg["data"]["train"]["batch_size"] = 16
    parts_cfg["grad"]["accumulate"] = 4

    whole, _ = train_steps(whole_cfg, 3)
    parts, training = train_steps(parts_cfg, 12)
    assert training.scheduler.last_epoch == 3  # optimizer steps, not batches
    untrained = mlp().state_dict()
    for name, value in whole.state_dict().items():
        assert not torch.equal(value, untrained[name])
        torch.testing.assert_close(parts.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_the_lr_schedule_counts_optimizer_steps(tmp_path):
    schedule = dict(lr_policy=dict(type="cosine"), warmup_epochs=1.0, max_epochs=2)
    cfg = digits_config(tmp_path, schedule=schedule, grad=dict(accumulate=4))
    cfg["data"]["train"]["batch_size"] = 16
    _, training = train_steps(cfg, 10)  # two windows of 4, and half of a third
    assert training.accumulation.steps_per_epoch == 23  # 89 batches of 16
    assert training.scheduler.last_epoch == 2
    reference = torch.optim.SGD(mlp().parameters(), lr=cfg["optimizer"]["lr"])
    scheduler = build_lr_scheduler(cfg["schedule"], reference, 23)
    for _ in range(2):
        reference.step()
        scheduler.step()
    assert training.optimizer.param_groups[0]["lr"] == reference.param_groups[0]["lr"]


def test_windows_end_every_epoch_and_count_steps():
    accumulation = Accumulation(4, 10)  # windows 4, 4, 2
    ends = [i for i in range(1, 21) if accumulation.window(i)[1]]
    assert ends == [4, 8, 10, 14, 18, 20]
    assert [accumulation.window(i)[0] for i in (1, 8, 9, 10, 11)] == [4, 4, 2, 2, 4]
    assert [accumulation.optimizer_steps(i) for i in (0, 3, 4, 9, 10, 11, 20)] == [
        0,
        1,
        1,
        3,
        3,
        4,
        6,
    ]


def test_auto_scale_lr_uses_the_effective_batch(tmp_path):
    cfg = digits_config(
        tmp_path,
        auto_scale_lr=dict(enable=True, base_batch_size=256),
        grad=dict(accumulate=4),
    )
    cfg["data"]["train"]["batch_size"] = 16
    assert effective_lr(cfg, world_size=2) == pytest.approx(cfg["optimizer"]["lr"] * 128 / 256)


def test_clipping_bounds_the_step_by_max_norm():
    model = mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    settings = StepSettings(torch.device("cpu"), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    recipe = TrainRecipe(Accumulation(1, 1), max_norm=0.01)
    step = make_train_step(model, optimizer, nn.CrossEntropyLoss(), settings, None, recipe)
    batch = (torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8), None)
    step(None, batch)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-3)


def test_mixup_and_cutmix_follow_seed_and_iteration_and_leave_the_global_rng():
    augment = build_batch_augment(
        [dict(type="MixUp", alpha=0.2), dict(type="CutMix", alpha=1.0)], 10, seed=3, rank=0
    )
    images = torch.randn(16, 3, 32, 32)
    labels = torch.arange(16) % 10
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = augment(images.clone(), labels, iteration=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global generator is untouched
    again = augment(images.clone(), labels, iteration=5)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other_rank = build_batch_augment([dict(type="MixUp", alpha=0.2)] * 2, 10, seed=3, rank=1)
    same_rank = build_batch_augment([dict(type="MixUp", alpha=0.2)] * 2, 10, seed=3, rank=0)
    assert not torch.equal(
        other_rank(images.clone(), labels, 5)[0], same_rank(images, labels, 5)[0]
    )
    targets = first[1]
    assert targets.shape == (16, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    # over iterations both kinds are picked: MixUp blends every pixel, CutMix pastes a box
    kinds = set()
    for iteration in range(1, 30):
        mixed, _ = augment(images.clone(), labels, iteration)
        unchanged = (mixed == images).float().mean().item()
        kinds.add("cutmix" if unchanged > 0.01 else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_soft_targets_train_with_label_smoothing():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = StepSettings(torch.device("cpu"), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    augment = build_batch_augment([dict(type="CutMix", alpha=1.0)], 10, seed=0, rank=0)
    recipe = TrainRecipe(Accumulation(1, 1), batch_augment=augment)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    step = make_train_step(model, optimizer, criterion, settings, None, recipe)
    batch = (torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8), None)
    assert torch.isfinite(step(None, batch))


@pytest.mark.parametrize(
    "steps, message",
    [
        ([dict(type="MixUpp", alpha=0.2)], "did you mean 'MixUp'"),
        ([dict(type="CutMix", alpha=1.0, beta=2)], "data.batch_augments[0]: CutMix"),
        ([dict(type="MixUp", p=0.0)], "not all 0"),
    ],
)
def test_bad_batch_augments_are_one_line_errors(steps, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_batch_augment(steps, 10, seed=0, rank=0)


def test_ema_momentum_warms_up_over_optimizer_steps(tmp_path):
    cfg = digits_config(tmp_path, ema=dict(enabled=True, warmup_iters=5, momentum_warmup=0.5))
    ema = ModelEma(mlp(), cfg, Accumulation(2, 10))
    momenta = [ema.momentum_at(step) for step in range(1, 8)]
    assert momenta[0] == 0.5 and momenta[4:] == [0.0002] * 3
    assert all(a > b for a, b in zip(momenta[:5], momenta[1:5], strict=False))
    with pytest.raises(UserError, match="ema.momentum must be between 0 and 1"):
        ModelEma(mlp(), digits_config(tmp_path, ema=dict(momentum=1.5)), Accumulation(1, 1))


def test_mixup_and_cutmix_in_the_gpu_resident_mode_repeat_with_the_seed(
    cifar10_subset, tmp_path, monkeypatch
):
    monkeypatch.setenv("IGNITE_CLS_CACHE", str(tmp_path / "cache"))
    root = cifar10_subset(per_class_train=4, per_class_test=1)
    augments = [dict(type="MixUp", alpha=0.2), dict(type="CutMix", alpha=1.0)]
    pipeline = [dict(type="RandomCrop", size=32, padding=4), dict(type="RandomHorizontalFlip")]
    train = dict(type="folder", root=str(root / "train"), batch_size=8, pipeline=pipeline)
    cfg = with_defaults(
        dict(data=dict(gpu_resident=True, batch_augments=augments, train=train), seed=5)
    )
    cfg["work_dir"] = str(tmp_path)

    def trained() -> dict[str, torch.Tensor]:
        _, loader = build_data(cfg, ["train"], 0, 1, pin_memory=False)["train"]
        model = mlp()
        settings = StepSettings.from_config(cfg, torch.device("cpu"))
        training = build_trainer(cfg, model, loader, settings, 10, console=None)
        training.trainer.run(loader, max_epochs=1)
        assert torch.isfinite(training.trainer.state.output)
        return model.state_dict()

    first, again = trained(), trained()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["1.weight"], mlp().state_dict()["1.weight"])


def test_ema_averages_trained_parameters_and_keeps_frozen_ones_bit_identical(tmp_path):
    model = mlp()
    freeze(model, ["1"])
    # 0.1234: an average of equal values that is not always bit-equal to them
    cfg = digits_config(tmp_path, ema=dict(enabled=True, momentum=0.1234))
    ema = ModelEma(model, cfg, Accumulation(1, 8))
    start = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    settings = StepSettings(torch.device("cpu"), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    trainer = Engine(make_train_step(model, optimizer, nn.CrossEntropyLoss(), settings, None))
    ema.attach(trainer)
    torch.manual_seed(0)
    batches = [
        (torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8), None)
        for _ in range(8)
    ]
    trainer.run(batches, max_epochs=1)
    averaged, trained = ema.model.state_dict(), model.state_dict()
    for name in ("1.weight", "1.bias"):
        assert torch.equal(averaged[name], start[name]) and torch.equal(trained[name], start[name])
    for name in ("3.weight", "3.bias"):  # between the start and the trained weights
        assert not torch.equal(averaged[name], trained[name])
        assert not torch.equal(averaged[name], start[name])
