"""Python config files with `_base_` inheritance, defaults, checks, dumping, dotted reads.

Follows MMPretrain / mmengine config semantics (plain Python files, `_base_`, `_delete_`)
without depending on mmengine; `--cfg-options` parsing is in `overrides.py`. Stdlib only:
the light CLI imports this module, so it must not pull in torch.
"""

import ast
import copy
import difflib
import keyword
import os
import pprint
import reprlib
import tempfile
import traceback
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ignite_cls.defaults import DEFAULTS, OPEN_KEYS
from ignite_cls.errors import UserError
from ignite_cls.overrides import apply_options

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
_MISSING = object()


# ---------------------------------------------------------------- loading and merging


def load_config(path: str | os.PathLike) -> dict:
    """Execute a Python config file and return its public top-level names, bases merged in."""
    return _load(Path(path), ())


def _load(path: Path, chain: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    resolved = [p.resolve() for p in chain]
    if path.resolve() in resolved:
        cycle = (*chain[resolved.index(path.resolve()) :], path)
        raise UserError(f"{BASE_KEY} cycle: " + " -> ".join(map(str, cycle)))
    namespace = _execute(path)
    merged: dict = {}
    for base in _bases(path, namespace.get(BASE_KEY, [])):
        base_path = path.parent / base
        if not base_path.is_file():
            raise UserError(f"{path}: base config not found: {base}")
        merged = merge(merged, _load(base_path, (*chain, path)))
    # modules, functions and classes are the file's helpers, not settings
    own = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not callable(value)
    }
    return merge(merged, own)


def _execute(path: Path) -> dict:
    """Run the file; turn syntax errors and exceptions into one-line `PATH:LINE:` errors."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read config file: {e}") from None
    filename = str(path)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as e:
        raise UserError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    namespace: dict = {"__file__": str(path.resolve()), "__name__": "__config__"}
    try:
        exec(code, namespace)
    except Exception as e:
        frames = traceback.extract_tb(e.__traceback__)
        line = [f.lineno for f in frames if f.filename == filename][-1]
        message = " ".join(str(e).split())
        raise UserError(f"{path}:{line}: {type(e).__name__}: {message}") from None
    return namespace


def _bases(path: Path, value: Any) -> list[str]:
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    if isinstance(value, list | tuple) and all(isinstance(v, str | os.PathLike) for v in value):
        return [os.fspath(v) for v in value]
    raise UserError(
        f"{path}: {BASE_KEY} must be a path or a list of paths, got {type(value).__name__}"
    )


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` over `base` into new dicts; lists are replaced, not merged.

    A dict holding `_delete_=True` replaces the inherited value instead of merging into it;
    the `_delete_` key never reaches the result.
    """
    out = {} if override.get(DELETE_KEY) else copy.deepcopy(base)
    for key, value in override.items():
        if key == DELETE_KEY:
            continue
        if isinstance(value, dict):
            old = out.get(key)
            out[key] = merge(old if isinstance(old, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- defaults and checks


def with_defaults(cfg: dict) -> dict:
    """Merge DEFAULTS under `cfg`; an OPEN_KEYS subtree the user gives replaces the default.

    Open subtrees are not merged so that, e.g., `optimizer=dict(type='Adam')` does not
    inherit SGD's `momentum`.
    """
    out = merge(DEFAULTS, cfg)
    opened = {}
    for key in OPEN_KEYS:
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            opened[key] = merge({}, node) if isinstance(node, dict) else node
    return apply_options(out, opened)


_TYPES: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "bool"),
    int: ((int,), "int"),
    float: ((int, float), "float"),
    str: ((str, type(None)), "str or None"),
    list: ((list, tuple), "list"),
    dict: ((dict,), "dict"),
}


def check_config(cfg: dict, typos_are_errors: bool = True) -> list[str]:
    """Check a config merged with defaults: unknown keys -> warnings, wrong types -> UserError.

    Unknown keys only warn so configs written for MMPretrain (or later versions) still run;
    but a key that is a near miss of a known one is a typo whose setting would be silently
    ignored (days of training with the default), so with ``typos_are_errors`` it stops here,
    as does a wrong type, which would fail later, far from its cause.
    """
    warnings: list[str] = []
    _check(cfg, DEFAULTS, "", warnings)
    typos = [w for w in warnings if "did you mean" in w]
    if typos_are_errors and typos:
        more = f" (and {len(typos) - 1} more)" if len(typos) > 1 else ""
        raise UserError(f"{typos[0]}{more}")
    return warnings


def _check(cfg: dict, defaults: dict, prefix: str, warnings: list[str]) -> None:
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            # siblings compare by key name (a shared prefix would make every sibling "close");
            # a top-level key may be a nested one put at the wrong level: compare full paths.
            if prefix:
                match = _closest(str(key), defaults)
                match = match and f"{prefix}{match}"
            else:
                match = _closest(name, _paths(DEFAULTS))
            hint = f" (did you mean {match!r}?)" if match else ""
            warnings.append(f"unknown config key {name!r}{hint}")
            continue
        default = defaults[key]
        if default is None:
            continue
        allowed, expected = _TYPES[type(default)]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise UserError(
                f"config key {name!r} must be {expected}, "
                f"got {type(value).__name__} ({reprlib.repr(value)})"
            )
        if isinstance(default, dict) and name not in OPEN_KEYS:
            _check(value, default, f"{name}.", warnings)


def _paths(tree: dict, prefix: str = "") -> list[str]:
    """Every dotted key in `tree`, the dict-valued ones included."""
    paths = []
    for key, value in tree.items():
        paths.append(f"{prefix}{key}")
        if isinstance(value, dict):
            paths += _paths(value, f"{prefix}{key}.")
    return paths


def _closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1)
    return matches[0] if matches else None


def close_matches(word: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "": for error messages."""
    match = _closest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""


# ---------------------------------------------------------------- reading


def setting(cfg: Mapping, key: str) -> Any:
    """The value at a dotted key, e.g. ``setting(cfg, "amp.enabled")``: code that acts on a
    setting reads it by the name users write in configs and ``--cfg-options``."""
    node: Any = cfg
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


# ---------------------------------------------------------------- output


def format_config(cfg: dict) -> str:
    """The config as a Python config file that `load_config` reads back to an equal dict."""
    lines = ["# Config written by ignite_cls; load it with ignite_cls.config.load_config.", ""]
    for key, value in cfg.items():
        loadable = isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)
        if not loadable or key.startswith("_"):
            raise UserError(f"cannot write config key {key!r}: not a valid top-level name")
        text = pprint.pformat(value, width=100, sort_dicts=False)
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UserError(
                f"config key {key!r} cannot be written as a Python literal: "
                f"{reprlib.repr(value)}; use str, numbers, lists, dicts"
            ) from None
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def dump_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write `format_config(cfg)` atomically: a crash never leaves a half-written config."""
    path = Path(path)
    text = format_config(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a config is not a secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def flatten(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted key: value} (lists stay values), e.g. for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat
