"""The emulated Razorpay API (`/v1/payment_links...`) and the middleware every request
passes: request log, injected faults, Basic auth, Razorpay-shaped errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler

from paykube_dev.psp_emulator.clock import JsonObject, new_id
from paykube_dev.psp_emulator.faults import Fault, after_handling

from . import errors
from .appkeys import BODY, DISPATCHER, OBJECT_ID, REQUEST_ID, SCOPE, STATE
from .errors import RazorpayError
from .model import RequestRecord

log = logging.getLogger(__name__)
MAX_BODY = 1024**2


def json_response(obj: JsonObject, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        content_type="application/json", charset="utf-8")


def error_response(exc: RazorpayError) -> web.Response:
    response = json_response(exc.body(), exc.status)
    response.headers.update(exc.headers)
    return response


@web.middleware
async def razorpay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_id("req_", 14)
    request[REQUEST_ID] = request_id
    if not request.path.startswith("/v1/"):
        response = await handler(request)
        response.headers["X-Razorpay-Request-Id"] = request_id
        return response
    state = request.app[STATE]
    record = RequestRecord(request_id=request_id, method=request.method, path=request.path,
                           raw_path=request.raw_path, at=time.time())
    state.requests.append(record)
    fault = state.faults.take(request.method, request.path)
    record.fault = fault.kind if fault else None
    try:
        if fault is not None:
            await _early_fault(fault)
        scope = state.book.authenticate(request.headers.get("Authorization"),
                                        state.clock.now_int())
        record.key_id, record.account_id = scope.key_id, scope.account.id
        record.livemode = scope.livemode
        request[SCOPE] = scope
        request[BODY] = await _read_body(request)
        response = await handler(request)
    except RazorpayError as exc:
        response = error_response(exc)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        response = error_response(errors.not_found_url())
    except Exception:
        log.exception("emulator bug on %s %s", request.method, request.path)
        response = error_response(errors.server_error())
    record.status = response.status
    response.headers["X-Razorpay-Request-Id"] = request_id
    return await after_handling(
        state.faults, fault, request, response, request_id, request.get(OBJECT_ID),
    )


async def _early_fault(fault: Fault) -> None:
    if fault.kind == "latency":
        await asyncio.sleep(fault.seconds)
    elif fault.kind == "rate_limit":
        raise errors.rate_limited(fault.retry_after)
    elif fault.kind == "api_error":
        raise errors.server_error()
    elif fault.kind == "razorpay_error":
        raise RazorpayError(fault.status, fault.message, code=fault.code or errors.BAD_REQUEST,
                            field=fault.param)


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.method not in ("POST", "PATCH", "PUT") or not request.can_read_body:
        return {}
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise errors.invalid(None, "The request body is too large.")
    if not raw.strip():
        return {}
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.invalid(None, "The request body could not be parsed as JSON.") from exc
    if not isinstance(body, dict):
        raise errors.invalid(None, "The request body must be a JSON object.")
    return body


async def create_link(request: web.Request) -> web.Response:
    link = request.app[STATE].create_link(request[SCOPE], request[BODY])
    request[OBJECT_ID] = link.id
    return json_response(link.to_api())


async def fetch_link(request: web.Request) -> web.Response:
    link = request.app[STATE].get_link(request[SCOPE], request.match_info["id"])
    return json_response(link.to_api())


async def list_links(request: web.Request) -> web.Response:
    """`?reference_id=`: Razorpay's way to find a link after a lost create answer."""
    reference = request.query.get("reference_id")
    links = request.app[STATE].find(request[SCOPE], reference)
    return json_response({"payment_links": [link.to_api() for link in links]})


async def cancel_link(request: web.Request) -> web.Response:
    link, event = request.app[STATE].cancel_via_api(request[SCOPE], request.match_info["id"])
    request[OBJECT_ID] = link.id
    request.app[DISPATCHER].dispatch_later(event)
    return json_response(link.to_api())


async def create_refund(request: web.Request) -> web.Response:
    refund, events = request.app[STATE].create_refund_once(
        request[SCOPE], request.match_info["id"], request[BODY],
        request.headers.get("X-Refund-Idempotency"))
    request[OBJECT_ID] = refund.id
    for event in events:
        request.app[DISPATCHER].dispatch_later(event)
    return json_response(refund.to_api())


async def fetch_refund(request: web.Request) -> web.Response:
    refund = request.app[STATE].get_refund(request[SCOPE], request.match_info["id"])
    return json_response(refund.to_api())


async def list_payment_refunds(request: web.Request) -> web.Response:
    """`?count=` (1..100, default 10) and `?skip=`: Razorpay's paging."""
    state = request.app[STATE]
    _, payment = state.payment(request[SCOPE], request.match_info["id"])
    count = _query_int(request, "count", 10, 1, 100)
    skip = _query_int(request, "skip", 0, 0, 2**31)
    items = [r.to_api() for r in state.refunds_of_payment(payment.id)][skip:skip + count]
    return json_response({"entity": "collection", "count": len(items), "items": items})


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise errors.invalid(name, f"The {name} must be between {low} and {high}.")
    return int(raw)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/payment_links", create_link)
    r.add_post("/v1/payment_links/", create_link)  # the form in Razorpay's curl examples
    r.add_get("/v1/payment_links", list_links)
    r.add_get("/v1/payment_links/{id}", fetch_link)
    r.add_post("/v1/payment_links/{id}/cancel", cancel_link)
    r.add_post("/v1/payments/{id}/refund", create_refund)
    r.add_get("/v1/payments/{id}/refunds", list_payment_refunds)
    r.add_get("/v1/refunds/{id}", fetch_refund)
