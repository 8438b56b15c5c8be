"""Run an Argo CD health script as Argo CD does: Lua 5.1 (lupa's lua51, the dialect of the
gopher-lua Argo CD embeds), a chunk with the global `obj` that returns {status, message}."""

from __future__ import annotations

from typing import Any

from lupa import lua51  # type: ignore[import-untyped]


def stored(value: Any) -> Any:
    """What the API server stores: no nulls."""
    if isinstance(value, dict):
        return {k: stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [stored(v) for v in value]
    return value


def run_health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(stored(obj), recursive=True)
    out = dict(lua.execute(script).items())
    assert set(out) == {"status", "message"}, out
    return str(out["status"]), str(out["message"])
