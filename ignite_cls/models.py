"""Classification models: torchvision architectures by name, optionally with a CIFAR stem."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from ignite_cls.config import close_matches
from ignite_cls.errors import UserError


def available_models() -> list[str]:
    """torchvision's image classification model names."""
    return torchvision.models.list_models(module=torchvision.models)


def build_model(model_cfg: dict, num_classes: int) -> nn.Module:
    """Build ``model_cfg['arch']`` with ``num_classes`` outputs, random weights unless pretrained."""
    arch = model_cfg["arch"]
    names = available_models()
    if arch not in names:
        raise UserError(f"unknown model.arch '{arch}'{close_matches(arch, names)}")
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if model_cfg["cifar_stem"]:
        use_cifar_stem(model, arch)
    if model_cfg["pretrained"]:
        load_pretrained(model, model_cfg["pretrained"])
    if model_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if model_cfg["compile"]:
        model.compile()  # in place: state dict keys stay those of the plain model
    return model


def use_cifar_stem(model: nn.Module, arch: str) -> None:
    """Replace a ResNet's 7x7/2 conv and max-pool by a 3x3/1 conv: keeps 32 px inputs resolved."""
    if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
        raise UserError(f"model.cifar_stem is only supported for ResNet-style models, not '{arch}'")
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def load_pretrained(model: nn.Module, source: str) -> None:
    """Load weights from a path or URL; a classification head of another size is left as built."""
    from ignite_cls.checkpoint_io import load_checkpoint

    state = load_checkpoint(source)
    state = state.get("model", state.get("state_dict", state))
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not compatible:
        raise UserError(f"model.pretrained {source} has no weights that fit this model")
    model.load_state_dict(compatible, strict=False)


def load_weights(model: nn.Module, state: dict, source: str, assign: bool = False) -> None:
    """Load a checkpoint's model weights strictly, summarising any mismatch in one line
    (``assign``: take the checkpoint's tensors themselves, as a model on the meta device
    needs)."""
    result = _mismatch(model.state_dict(), state)
    if result:
        raise UserError(f"checkpoint {source} does not fit the model: {result}")
    model.load_state_dict(state, assign=assign)


def build_trained_model(model_cfg: dict, num_classes: int, state: dict, source: str) -> nn.Module:
    """The architecture with a checkpoint's weights, built without first drawing the random
    weights the checkpoint replaces (on the meta device; a model holding tensors that no
    state dict carries is built the ordinary way)."""
    plain = {**model_cfg, "pretrained": None, "compile": False, "channels_last": False}
    with torch.device("meta"):
        model = build_model(plain, num_classes)
    load_weights(model, state, source, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = build_model(plain, num_classes)
        load_weights(model, state, source)
    if model_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if model_cfg["compile"]:
        model.compile()
    return model


def _mismatch(own: dict, state: dict) -> str:
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            shown = ", ".join(keys[:3]) + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")
            parts.append(f"{label} keys: {shown}")
    return "; ".join(parts)
