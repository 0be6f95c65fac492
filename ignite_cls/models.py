"""Classification models: torchvision architectures by name, optionally with a CIFAR stem,
pretrained weights (torchvision's by name, or a file / URL) and frozen stages."""

from __future__ import annotations

import logging
import re
import socket
import urllib.error
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import WeightsEnum

from ignite_cls.config import close_matches
from ignite_cls.errors import UserError, one_line

logger = logging.getLogger("ignite_cls")

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP's and torch.compile's key prefixes
_WEIGHTS_NAME = re.compile(r"[A-Za-z0-9_]+")
DOWNLOAD_TIMEOUT = 60.0  # s without data before a download of pretrained weights fails
_SHOWN = 4  # keys named in a one-line summary before "... (N in all)"


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
        load_pretrained(model, model_cfg["pretrained"], arch)
    if model_cfg["freeze"]:
        freeze(model, model_cfg["freeze"])
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


def load_pretrained(model: nn.Module, source: str, arch: str) -> None:
    """Load the weights ``model.pretrained`` names into ``model``. Tensors the weights lack,
    or hold in another shape (a head for another class count), stay as initialised, and one
    log line says which: fine-tuning replaces the head on purpose, but a typo must show."""
    state = strip_wrapper_prefixes(pretrained_state(source, arch))
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not compatible:
        raise UserError(f"model.pretrained {source} has no weights that fit this model")
    model.load_state_dict(compatible, strict=False)
    left = [
        f"{k} (shape {list(state[k].shape)} in the weights, {list(own[k].shape)} here)"
        if k in state
        else f"{k} (not in the weights)"
        for k in own
        if k not in compatible
    ]
    if left:
        logger.info(
            f"model.pretrained {source}: {len(left)} of {len(own)} tensors left as "
            f"initialised: {_listed(left)}"
        )
    else:
        logger.info(f"model.pretrained {source}: all {len(own)} tensors loaded")


def pretrained_state(source: str, arch: str) -> dict[str, torch.Tensor]:
    """The state dict ``model.pretrained`` names: torchvision's weights for ``arch`` by name
    (through torch hub's download cache), else a checkpoint file or URL."""
    if not isinstance(source, str):
        raise UserError(f"model.pretrained must be a weights name, a path or a URL, got {source!r}")
    weights = torchvision_weights(source, arch)
    if weights is not None:
        return _hub_state(weights, source, arch)
    from ignite_cls.checkpoint_io import load_checkpoint

    state = load_checkpoint(source)
    return state.get("model", state.get("state_dict", state))


def torchvision_weights(source: str, arch: str) -> WeightsEnum | None:
    """The torchvision weights ``source`` names for ``arch``, or None when ``source`` is a
    path or URL. A bare word that is neither a weights name nor a file is a misspelt name:
    reading it as a path would only say "not found", without the names to choose from."""
    try:
        weights_enum = torchvision.models.get_model_weights(arch)
    except ValueError:  # a builder without a weights enum
        weights_enum = None
    names = list(weights_enum.__members__) if weights_enum is not None else []
    if source in names:
        return weights_enum[source]
    if not _WEIGHTS_NAME.fullmatch(source) or Path(source).is_file():
        return None
    if weights_enum is None:
        raise UserError(
            f"model.pretrained '{source}' is no file, and {arch} has no torchvision weights "
            "to take by name (give a path or URL)"
        )
    listed = ", ".join(sorted(names, key=lambda name: name != "DEFAULT"))
    raise UserError(
        f"unknown model.pretrained '{source}' for {arch}: its torchvision weights are "
        f"{listed} (or give a path or URL)"
    )


def _hub_state(weights: WeightsEnum, name: str, arch: str) -> dict[str, torch.Tensor]:
    """torchvision's own loading (torch hub's cache, hash checked on download; the
    architecture's builder, which also renames the keys of older files), with its failures
    as one line that says where the file goes on a machine without network."""
    file = Path(torch.hub.get_dir()) / "checkpoints"
    file = file / Path(urllib.parse.urlparse(weights.url).path).name
    cached = file.is_file()
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torch hub downloads without one
    try:
        with torch.device("cpu"):
            return torchvision.models.get_model(arch, weights=weights, progress=False).state_dict()
    except Exception as e:
        if cached:
            raise UserError(
                f"model.pretrained {name}: cannot load {file} ({one_line(e)}); "
                "delete it to download it again"
            ) from e
        raise UserError(
            f"model.pretrained {name}: cannot download {weights.url} ({_reason(e)}); "
            f"without network access, put that file at {file}"
        ) from e
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return one_line(error)


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the leading ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) that
    weights saved from a wrapped model carry, in any order and number."""
    stripped = {}
    for key, value in state.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    return stripped


def freeze(model: nn.Module, prefixes: Sequence[str]) -> None:
    """Stop training the parameters under each module-name prefix, and keep the BatchNorm
    layers there in eval mode: their running statistics are part of what was frozen, and
    ``model.train()`` would otherwise update them on every batch."""
    modules = {name: module for name, module in model.named_modules() if name}  # not the root
    parameters = dict(model.named_parameters())
    for prefix in prefixes:
        if not isinstance(prefix, str) or not any(
            _under(name, prefix) for name in (*modules, *parameters)
        ):
            top = ", ".join(name for name, _ in model.named_children())
            raise UserError(
                f"model.freeze entry {prefix!r} names no module or parameter of this model "
                f"(its top-level modules: {top})"
            )
    frozen = 0
    for name, parameter in parameters.items():
        if any(_under(name, prefix) for prefix in prefixes):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    for name, module in modules.items():
        if isinstance(module, _BatchNorm) and any(_under(name, p) for p in prefixes):
            module.eval()
            module.register_forward_pre_hook(_stay_in_eval)
    trainable = sum(p.numel() for p in parameters.values()) - frozen
    logger.info(
        f"model.freeze {', '.join(prefixes)}: {frozen:,} parameters frozen, {trainable:,} trainable"
    )


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _stay_in_eval(module: nn.Module, inputs: tuple) -> None:
    """A frozen BatchNorm's pre-forward hook: undo the ``train()`` that reached it."""
    module.eval()


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
    plain = {**model_cfg, "pretrained": None, "freeze": [], "compile": False}
    plain["channels_last"] = False
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
            parts.append(f"{label} keys: {_listed(keys, shown=3)}")
    return "; ".join(parts)


def _listed(items: list[str], shown: int = _SHOWN) -> str:
    """The first ``shown`` items, then how many there are in all."""
    more = f", ... ({len(items)} in all)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
