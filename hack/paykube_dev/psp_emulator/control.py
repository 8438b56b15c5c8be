"""Control endpoints every emulator serves the same way: JSON helpers, faults, held
answers, the request log and deliveries. The emulator's state derives from `EmulatorCore`
and is also stored under `CORE`, so that these handlers find it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from aiohttp import web

from .clock import Clock, JsonObject
from .delivery import Delivery
from .faults import Fault, FaultBook, FaultSpecError

PREFIX = "/_emulator"


class Record(Protocol):
    def to_api(self) -> JsonObject: ...


R = TypeVar("R", bound=Record)


class EmulatorCore(Generic[R]):
    """What the shared handlers need of an emulator's state (`R`: its request records)."""

    fault_kinds: Sequence[str] = ()
    rate_limit_reasons: Sequence[str] = ("global-rate",)
    # query parameter of GET /_emulator/requests -> field of a request record
    request_filters: dict[str, str] = {"path": "path", "method": "method"}

    def __init__(self) -> None:
        self.clock = Clock()
        self.faults = FaultBook()
        self.requests: list[R] = []
        self.deliveries: list[Delivery] = []


CORE = web.AppKey[EmulatorCore[Any]]("psp_emulator_core")


def ok(obj: JsonObject, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status, dumps=lambda o: json.dumps(o, indent=2))


def fail(status: int, message: str) -> web.Response:
    return ok({"error": {"message": message}}, status)


async def read_body(request: web.Request) -> JsonObject:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return cast(JsonObject, body)


async def requests_log(request: web.Request) -> web.Response:
    """Each query parameter named in the core's `request_filters` must match."""
    core = request.app[CORE]
    wanted: dict[str, Any] = {
        name: request.query[param] for param, name in core.request_filters.items()
        if param in request.query
    }
    if "method" in wanted:
        wanted["method"] = str(wanted["method"]).upper()
    data = [r.to_api() for r in core.requests]
    return ok({"data": [r for r in data if all(r.get(k) == v for k, v in wanted.items())]})


async def list_deliveries(request: web.Request) -> web.Response:
    event = request.query.get("event")
    return ok({"data": [
        d.to_api() for d in request.app[CORE].deliveries if event is None or d.event_id == event
    ]})


async def add_fault(request: web.Request) -> web.Response:
    """`{"kind", "count"?, "method"?, "path"?, "path_prefix"?, "seconds"?, ...}`."""
    core = request.app[CORE]
    try:
        fault = Fault.from_json(await read_body(request), core.fault_kinds,
                                core.rate_limit_reasons)
    except (FaultSpecError, TypeError, ValueError) as exc:
        return fail(400, str(exc))
    return ok(core.faults.add(fault).to_api())


async def list_faults(request: web.Request) -> web.Response:
    return ok({"data": [f.to_api() for f in request.app[CORE].faults.faults]})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[CORE].faults.clear()
    return ok({"ok": True})


async def list_held(request: web.Request) -> web.Response:
    held = request.app[CORE].faults.held
    return ok({"data": [h.to_api() for h in held if not h.released.is_set()]})


async def release(request: web.Request) -> web.Response:
    count = (await read_body(request)).get("count")
    return ok({"released": request.app[CORE].faults.release(count)})


def add_routes(app: web.Application, core: EmulatorCore[Any]) -> None:
    app[CORE] = core
    r = app.router
    r.add_get(f"{PREFIX}/requests", requests_log)
    r.add_get(f"{PREFIX}/deliveries", list_deliveries)
    r.add_post(f"{PREFIX}/faults", add_fault)
    r.add_get(f"{PREFIX}/faults", list_faults)
    r.add_delete(f"{PREFIX}/faults", clear_faults)
    r.add_get(f"{PREFIX}/held", list_held)
    r.add_post(f"{PREFIX}/release", release)
