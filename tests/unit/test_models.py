"""Models: torchvision weights by name from torch hub's cache (planted, never downloaded),
weights saved from wrapped models, heads of another size, frozen stages, and the shipped
fine-tuning config."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from ignite_cls.config import check_config, load_config, with_defaults
from ignite_cls.data.transforms import build_transform
from ignite_cls.errors import UserError
from ignite_cls.models import build_model, build_trained_model, torchvision_weights
from ignite_cls.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[2]
FINETUNE_CONFIG = ROOT / "configs" / "resnet50_finetune_folder.py"
RESNET18_V1 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
FROZEN = ["conv1", "bn1", "layer1"]


def model_cfg(**keys) -> dict:
    return with_defaults({"model": keys})["model"]


@pytest.fixture(scope="module")
def planted_hub(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A TORCH_HOME holding resnet18's IMAGENET1K_V1 file: a 1000-class state dict whose
    every tensor differs from a fresh model's (BatchNorm's ones and zeros too), so that an
    equal tensor can only have been loaded."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand_like(tensor) + 0.5
    torch_home = tmp_path_factory.mktemp("torch")
    file = torch_home / "hub" / "checkpoints" / Path(RESNET18_V1.url).name
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    return torch_home, state


@pytest.fixture
def planted(planted_hub, monkeypatch) -> dict[str, torch.Tensor]:
    """The planted weights, in the torch hub cache this test sees; no download can start."""
    torch_home, state = planted_hub
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return state


def no_download(url: str, *args, **kwargs) -> None:
    raise AssertionError(f"tried to download {url}")


def loaded_from(model: nn.Module, state: dict[str, torch.Tensor]) -> set[str]:
    """The keys of ``model`` whose tensors equal ``state``'s."""
    own = model.state_dict()
    return {k for k, v in state.items() if own[k].shape == v.shape and torch.equal(own[k], v)}


# ---------------------------------------------------------------- pretrained weights


def test_weights_by_name_load_everything_but_a_head_of_another_size(planted, ignite_cls_log):
    torch.manual_seed(1)
    model = build_model(model_cfg(pretrained="IMAGENET1K_V1"), num_classes=10)
    assert loaded_from(model, planted) == set(planted) - {"fc.weight", "fc.bias"}
    assert model.fc.weight.shape == (10, 512)
    assert not torch.equal(model.fc.weight, planted["fc.weight"][:10])
    (line,) = [
        r.getMessage() for r in ignite_cls_log.records if "model.pretrained" in r.getMessage()
    ]
    assert line == (
        f"model.pretrained IMAGENET1K_V1: 2 of {len(planted)} tensors left as initialised: "
        "fc.weight (shape [1000, 512] in the weights, [10, 512] here), "
        "fc.bias (shape [1000] in the weights, [10] here)"
    )


def test_default_names_the_same_file(planted):
    model = build_model(model_cfg(pretrained="DEFAULT"), num_classes=1000)
    assert loaded_from(model, planted) == set(planted)


@pytest.mark.parametrize("name", ["IMAGENET1K_V9", "imagenet1k_v1", "DEFAULTS"])
def test_an_unknown_weights_name_lists_the_valid_ones(planted, name):
    expected = (
        f"unknown model.pretrained '{name}' for resnet18: its torchvision weights are "
        "DEFAULT, IMAGENET1K_V1 (or give a path or URL)"
    )
    with pytest.raises(UserError) as error:
        build_model(model_cfg(pretrained=name), num_classes=10)
    assert str(error.value) == expected


def test_a_bare_word_that_is_a_file_is_a_path(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": planted}, tmp_path / "my_weights")
    model = build_model(model_cfg(pretrained="my_weights"), num_classes=1000)
    assert loaded_from(model, planted) == set(planted)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "module.module."])
def test_keys_of_wrapped_models_load(planted, tmp_path, prefix, ignite_cls_log):
    path = tmp_path / "wrapped.pt"
    torch.save({"model": {prefix + k: v for k, v in planted.items()}}, path)
    model = build_model(model_cfg(pretrained=str(path)), num_classes=1000)
    assert loaded_from(model, planted) == set(planted)
    assert f"model.pretrained {path}: all {len(planted)} tensors loaded" in ignite_cls_log.messages


def test_a_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as error:
        build_model(model_cfg(pretrained="IMAGENET1K_V1"), num_classes=10)
    assert str(error.value) == (
        f"model.pretrained IMAGENET1K_V1: cannot download {RESNET18_V1.url} "
        f"(Name or service not known); without network access, put that file at "
        f"{tmp_path / 'torch' / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'}"
    )


def test_weights_that_fit_nothing_are_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="has no weights that fit this model"):
        build_model(model_cfg(pretrained=str(path)), num_classes=10)


# ---------------------------------------------------------------- frozen stages


def frozen_key(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in FROZEN)


def test_frozen_stages_and_their_batchnorm_statistics_do_not_change(ignite_cls_log):
    torch.manual_seed(0)
    model = build_model(model_cfg(freeze=FROZEN), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(with_defaults({}), model, lr=0.1)  # SGD, momentum, decay
    criterion = nn.CrossEntropyLoss()
    for _ in range(3):
        model.train()
        loss = criterion(model(torch.randn(4, 3, 32, 32)), torch.randint(0, 10, (4,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    frozen = {k for k in before if frozen_key(k)}
    assert {"bn1.running_mean", "layer1.1.bn2.num_batches_tracked"} <= frozen
    assert {k for k in before if torch.equal(before[k], after[k])} == frozen
    counts = {True: 0, False: 0}
    for name, parameter in model.named_parameters():
        counts[frozen_key(name)] += parameter.numel()
    summary = f"{counts[True]:,} parameters frozen, {counts[False]:,} trainable"
    assert f"model.freeze conv1, bn1, layer1: {summary}" in ignite_cls_log.messages


def test_the_optimizer_holds_only_trainable_parameters():
    model = build_model(model_cfg(freeze=FROZEN), num_classes=10)
    optimizer = build_optimizer(with_defaults({}), model, lr=0.1)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in held} == {n for n in names.values() if not frozen_key(n)}


def test_freezing_everything_leaves_the_optimizer_nothing():
    everything = [name for name, _ in torchvision.models.resnet18().named_children()]
    model = build_model(model_cfg(freeze=everything), num_classes=10)
    with pytest.raises(UserError, match="model.freeze leaves no parameter to train"):
        build_optimizer(with_defaults({}), model, lr=0.1)


@pytest.mark.parametrize("prefix", ["layer9", "conv", "layer1.0.bn", ""])
def test_a_prefix_that_matches_nothing_is_an_error(prefix):
    with pytest.raises(UserError) as error:
        build_model(model_cfg(freeze=["conv1", prefix]), num_classes=10)
    assert str(error.value) == (
        f"model.freeze entry '{prefix}' names no module or parameter of this model "
        "(its top-level modules: conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, "
        "avgpool, fc)"
    )


def test_a_model_built_on_the_meta_device_is_frozen_too():
    with torch.device("meta"):
        model = build_model(model_cfg(freeze=FROZEN), num_classes=10)
    model = model.to_empty(device="cpu")
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        n for n, _ in model.named_parameters() if frozen_key(n)
    }
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert not model.bn1.training and not model.layer1[1].bn2.training
    assert model.layer2[0].bn1.training


def test_a_trained_model_for_inference_is_built_without_freezing():
    """Inference needs no frozen parameters; it needs the checkpoint's weights, built fast."""
    state = build_model(model_cfg(), num_classes=10).state_dict()
    model = build_trained_model(model_cfg(freeze=FROZEN), 10, state, "a checkpoint")
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


# ---------------------------------------------------------------- the fine-tuning config


def test_the_finetune_config_checks_and_builds_without_the_network(monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cfg = with_defaults(load_config(FINETUNE_CONFIG))
    assert check_config(cfg) == []
    model = cfg["model"]
    assert (model["arch"], model["pretrained"]) == ("resnet50", "IMAGENET1K_V2")
    assert torchvision_weights(model["pretrained"], model["arch"]).url.endswith(".pth")
    for split in ("train", "val", "test"):
        assert build_transform(cfg["data"][split]["pipeline"]) is not None
    for classes in (1000, 7):
        with torch.device("meta"):
            network = build_model({**model, "pretrained": None}, num_classes=classes)
        assert network.fc.out_features == classes
        assert not network.conv1.weight.requires_grad and not network.bn1.weight.requires_grad
        assert network.layer1[0].conv1.weight.requires_grad
