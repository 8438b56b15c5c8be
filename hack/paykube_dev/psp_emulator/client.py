"""The parts of every emulator's control client (`/_emulator/...`): the request and error
plumbing and the operations all emulators share (faults, holds, clock, request log)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from .clock import JsonObject

P = "/_emulator"


class EmulatorControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: JsonObject | None = None
    params: dict[str, str] | None = None


def drop_none(**values: Any) -> JsonObject:
    return {k: v for k, v in values.items() if v is not None}


def decode(response: httpx.Response) -> JsonObject:
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text}}
    if response.is_error:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise EmulatorControlError(response.status_code, str(error.get("message", body)))
    assert isinstance(body, dict)
    return body


def fault_call(
    kind: str, count: int | None, fields: dict[str, Any], error: dict[str, Any] | None,
) -> Call:
    body = drop_none(kind=kind, **fields, **(error or {}))
    body["count"] = count
    return Call("POST", f"{P}/faults", body)


class BaseControl:
    """Sync control client; do not call it from the loop that runs the emulator."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _do(self, call: Call) -> JsonObject:
        response = self._http.request(call.method, call.path, json=call.json, params=call.params)
        return decode(response)

    def _data(self, call: Call) -> list[JsonObject]:
        return list(self._do(call)["data"])

    def health(self) -> JsonObject:
        return self._do(Call("GET", f"{P}/health"))

    def reset(self) -> None:
        self._do(Call("POST", f"{P}/reset"))

    def stats(self) -> JsonObject:
        return self._do(Call("GET", f"{P}/stats"))

    def faults(self) -> list[JsonObject]:
        return self._data(Call("GET", f"{P}/faults"))

    def clear_faults(self) -> None:
        self._do(Call("DELETE", f"{P}/faults"))

    def held(self) -> list[JsonObject]:
        return self._data(Call("GET", f"{P}/held"))

    def wait_for_held(self, count: int = 1, timeout: float = 10.0) -> list[JsonObject]:
        deadline = time.monotonic() + timeout
        while True:
            held = self.held()
            if len(held) >= count or time.monotonic() > deadline:
                if len(held) < count:
                    raise TimeoutError(f"{len(held)} held responses after {timeout}s")
                return held
            time.sleep(0.05)

    def release(self, count: int | None = None) -> int:
        return int(self._do(Call("POST", f"{P}/release", drop_none(count=count)))["released"])

    def advance_clock(self, seconds: float) -> JsonObject:
        return self._do(Call("POST", f"{P}/clock", {"advance": seconds}))

    def deliveries(self, event_id: str | None = None) -> list[JsonObject]:
        return self._data(Call("GET", f"{P}/deliveries", params=drop_none(event=event_id)))


class BaseAsyncControl:
    """The same shared operations for async code (the emulator may share the loop)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _do(self, call: Call) -> JsonObject:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params,
        )
        return decode(response)

    async def _data(self, call: Call) -> list[JsonObject]:
        return list((await self._do(call))["data"])

    async def reset(self) -> None:
        await self._do(Call("POST", f"{P}/reset"))

    async def stats(self) -> JsonObject:
        return await self._do(Call("GET", f"{P}/stats"))

    async def clear_faults(self) -> None:
        await self._do(Call("DELETE", f"{P}/faults"))

    async def held(self) -> list[JsonObject]:
        return await self._data(Call("GET", f"{P}/held"))

    async def wait_for_held(self, count: int = 1) -> list[JsonObject]:
        """Poll until `count` responses are held; bound it with `asyncio.timeout`."""
        while len(held := await self.held()) < count:  # noqa: ASYNC110 (remote state)
            await asyncio.sleep(0.05)
        return held

    async def release(self, count: int | None = None) -> int:
        body = await self._do(Call("POST", f"{P}/release", drop_none(count=count)))
        return int(body["released"])

    async def advance_clock(self, seconds: float) -> JsonObject:
        return await self._do(Call("POST", f"{P}/clock", {"advance": seconds}))

    async def deliveries(self, event_id: str | None = None) -> list[JsonObject]:
        params = drop_none(event=event_id)
        return await self._data(Call("GET", f"{P}/deliveries", params=params))
