"""Stripe's form encoding: `a[b][0][c]=v` into nested dicts and lists."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import StripeError

Params = dict[str, Any]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> Params:
    """Nest the decoded pairs; dicts whose keys are all indexes become lists."""
    root: Params = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise StripeError(400, f"Invalid parameter name: {key}")
        path = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    raise StripeError(400, f"Invalid hash: {param_name(path[: i + 1])}")
                child = {}
                node[part] = child
            node = child
        last = path[-1] if path[-1] != "" else str(len(node))
        node[last] = value
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def param_name(path: list[str]) -> str:
    """`["line_items", "0", "quantity"]` → `line_items[0][quantity]`."""
    return path[0] + "".join(f"[{p}]" for p in path[1:])
