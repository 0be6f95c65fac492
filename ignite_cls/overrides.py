"""``--cfg-options`` items: ``key=value`` parsing (mmengine's DictAction rules) and setting
dotted keys in a config. Stdlib only."""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ignite_cls.errors import UserError


def parse_cfg_options(items: Sequence[str]) -> dict[str, Any]:
    """Parse `key=value` items (mmengine's DictAction) into {dotted key: value}, in order."""
    if isinstance(items, str):  # one item given bare must not be split into characters
        items = [items]
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"malformed --cfg-options item {item!r}: expected key=value")
        if "" in key.split("."):
            raise UserError(f"malformed --cfg-options item {item!r}: empty key")
        try:
            options[key] = parse_value(text)
        except UserError as e:
            raise UserError(f"malformed --cfg-options item {item!r}: {e}") from None
    return options


def parse_value(text: str) -> Any:
    """Parse one `--cfg-options` value: number, bool, None, string, or nested lists/tuples.

    `a,b` and `[a,b]` give lists, `(a,b)` tuples; brackets nest and commas inside brackets do
    not split the outer level; surrounding quotes are stripped.
    """
    stack = []
    for char in text:
        if char in "([":
            stack.append(")" if char == "(" else "]")
        elif char in ")]" and (not stack or stack.pop() != char):
            raise UserError(f"unbalanced brackets in {text!r}")
    if stack:
        raise UserError(f"unbalanced brackets in {text!r}")
    return _parse(text)


def _parse(text: str) -> Any:
    text = text.strip().strip("'\"")
    if text[:1] in ("(", "[") and _closing(text) == len(text) - 1:
        values = [_parse(part) for part in _split(text[1:-1])]
        return tuple(values) if text[0] == "(" else values
    parts = _split(text)
    if len(parts) > 1 or text.endswith(","):
        return [_parse(part) for part in parts]
    return _scalar(text)


def _closing(text: str) -> int:
    """Index of the bracket that closes the one opening `text`."""
    depth = 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if depth == 0:
            return i
    return -1


def _split(text: str) -> list[str]:
    """Split on commas outside brackets; a trailing comma adds no element (as in mmengine)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if start < len(text):
        parts.append(text[start:])
    return parts


def _scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None if text == "None" else text


def apply_options(cfg: dict, options: Mapping[str, Any]) -> dict:
    """Return a copy of `cfg` with each dotted key set; digits index into lists."""
    out = copy.deepcopy(cfg)
    for key, value in options.items():
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, dict):
                if last:
                    node[part] = copy.deepcopy(value)
                else:
                    node = node.setdefault(part, {})
                continue
            where = ".".join(parts[:i])
            if not isinstance(node, list):
                raise UserError(
                    f"cannot set {key!r}: {where!r} is a {type(node).__name__}, not a dict or list"
                )
            try:
                index = int(part)
            except ValueError:
                raise UserError(
                    f"cannot set {key!r}: {where!r} is a list, {part!r} is not an index"
                ) from None
            if not -len(node) <= index < len(node):
                raise UserError(
                    f"cannot set {key!r}: index {index} out of range for "
                    f"{where!r} (length {len(node)})"
                )
            if last:
                node[index] = copy.deepcopy(value)
            else:
                node = node[index]
    return out
