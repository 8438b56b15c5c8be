"""The emulated Stripe API (`/v1/...`) and the middleware every request passes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler

from . import errors
from .accounts import IdempotentResult, Scope
from .appkeys import DISPATCHER, OBJECT_ID, PARAMS, REQUEST_ID, SCOPE, STATE
from .errors import StripeError
from .faults import Fault, after_handling
from .forms import Params, parse_pairs
from .model import JsonObject, RequestRecord, mask_key, new_id
from .state import EmulatorState

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255


def json_response(obj: JsonObject, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(obj, indent=2).encode(),
        content_type="application/json", charset="utf-8",
    )


def error_response(exc: StripeError, request_id: str, livemode: bool = False) -> web.Response:
    response = json_response(exc.body(request_id, livemode), exc.status)
    response.headers.update(exc.headers)
    return response


@web.middleware
async def stripe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request-Id everywhere; on /v1: faults, auth, rate limit, idempotency, Stripe errors."""
    request_id = new_id("req_", 14)
    request[REQUEST_ID] = request_id
    if not request.path.startswith("/v1/"):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["Request-Id"] = request_id
            raise
        response.headers["Request-Id"] = request_id
        return response
    state = request.app[STATE]
    record = RequestRecord(
        request_id=request_id, method=request.method, path=request.path, at=time.time(),
        idempotency_key=request.headers.get("Idempotency-Key"),
        stripe_version=request.headers.get("Stripe-Version"), raw_path=request.raw_path,
        stripe_account=request.headers.get("Stripe-Account"),
    )
    state.requests.append(record)
    fault = state.faults.take(request.method, request.path)
    record.fault = fault.kind if fault else None
    livemode = False
    try:
        if fault is not None:
            await _early_fault(fault)
        scope = _authenticate(state, request, record)
        livemode = scope.livemode
        state.check_rate(scope.key_account)
        params = await _read_params(request)
        request[SCOPE] = scope
        request[PARAMS] = params
        response = await _idempotent(request, handler, scope, params, record)
    except StripeError as exc:
        response = error_response(exc, request_id, livemode)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        response = error_response(errors.unrecognized_url(request.method, request.path), request_id)
    except Exception:
        log.exception("emulator bug on %s %s", request.method, request.path)
        response = error_response(errors.api_error(None), request_id, livemode)
    record.status = response.status
    response.headers["Request-Id"] = request_id
    if record.account_id is not None and record.stripe_account is not None:
        response.headers["Stripe-Account"] = record.account_id
    response.headers["Stripe-Version"] = record.stripe_version or state.api_version
    return await after_handling(
        state.faults, fault, request, response, request_id, request.get(OBJECT_ID),
    )


def _authenticate(state: EmulatorState, request: web.Request, record: RequestRecord) -> Scope:
    """The request's scope, noted in its record as soon as each part is known."""
    key, key_account = state.book.authenticate(
        request.headers.get("Authorization"), state.clock.now_int(),
    )
    record.account, record.key_account_id = mask_key(key), key_account.id
    scope = state.book.scope(key, key_account, request.headers.get("Stripe-Account"))
    record.account_id, record.livemode = scope.account.id, scope.livemode
    return scope


async def _early_fault(fault: Fault) -> None:
    if fault.kind == "latency":
        await asyncio.sleep(fault.seconds)
    elif fault.kind == "rate_limit":
        raise errors.rate_limited(fault.reason, fault.retry_after,
                                  as_date=fault.retry_after_date)
    elif fault.kind == "api_error":
        raise errors.api_error(fault.should_retry)
    elif fault.kind == "stripe_error":
        raise errors.StripeError(fault.status, fault.message, code=fault.code,
                                 param=fault.param)


async def _read_params(request: web.Request) -> Params:
    pairs: Sequence[tuple[str, str]] = parse_qsl(request.query_string, keep_blank_values=True)
    if request.method == "POST":
        body = await request.text()
        pairs = [*pairs, *parse_qsl(body, keep_blank_values=True)]
    return parse_pairs(pairs)


async def _idempotent(
    request: web.Request, handler: Handler, scope: Scope, params: Params,
    record: RequestRecord,
) -> web.StreamResponse:
    """Stripe keeps idempotency keys per account (the connected one under Stripe-Account)
    and per mode."""
    account = scope.account
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    slot = (scope.livemode, key)
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise errors.invalid(
            "Idempotency-Key",
            f"Idempotency keys can be no longer than {MAX_IDEMPOTENCY_KEY} characters.",
        )
    endpoint = f"{request.method} {request.path}"
    saved = account.idempotency.get(slot)
    if saved is not None:
        if (saved.method, saved.path) != (request.method, request.path):
            raise errors.idempotency_endpoint(key, f"{saved.method} {saved.path}", endpoint)
        if saved.params != params:
            raise errors.idempotency_params(key)
        record.replayed = True
        replay = web.Response(
            status=saved.status, body=saved.body, content_type="application/json",
            charset="utf-8",
        )
        replay.headers.update(saved.headers)
        replay.headers.update({
            "Idempotency-Key": key, "Idempotent-Replayed": "true",
            "Original-Request": saved.request_id,
        })
        return replay
    if slot in account.in_flight:
        raise StripeError(
            409,
            "There is currently another in-progress request using this Idempotent Key (that "
            "probably means you submitted twice, and the other request is still going "
            f"through): {key}. Please try again later.",
            code="idempotency_key_in_use",
        )
    account.in_flight.add(slot)
    try:
        try:
            response = await handler(request)
        except StripeError as exc:
            if exc.saved:
                body = json.dumps(exc.body(request[REQUEST_ID]), indent=2).encode()
                _store(scope, key, request, params, exc.status, body, exc.headers)
            raise
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            _store(scope, key, request, params, response.status, response.body, {})
    finally:
        account.in_flight.discard(slot)
    response.headers["Idempotency-Key"] = key
    return response


def _store(
    scope: Scope, key: str, request: web.Request, params: Params, status: int,
    body: bytes, headers: dict[str, str],
) -> None:
    scope.account.idempotency[(scope.livemode, key)] = IdempotentResult(
        method=request.method, path=request.path, params=params, status=status, body=body,
        request_id=request[REQUEST_ID], headers=dict(headers),
    )


# --- handlers -------------------------------------------------------------------------


def check_params(params: Params, allowed: Sequence[str]) -> None:
    for name in params:
        if name not in allowed:
            raise errors.unknown_param(name)


async def create_session(request: web.Request) -> web.Response:
    session = request.app[STATE].create_session(request[SCOPE], request[PARAMS])
    request[OBJECT_ID] = session.id
    return json_response(session.to_api())


EXPANDABLE_SESSION_FIELDS = ("payment_intent",)


def _expand(params: Params) -> list[str]:
    """The `expand[]` list; Stripe refuses fields that cannot be expanded."""
    raw: Any = params.get("expand", [])
    fields = raw if isinstance(raw, list) else [raw]
    for name in fields:
        if name not in EXPANDABLE_SESSION_FIELDS:
            raise errors.invalid("expand", f"This property cannot be expanded ({name}).")
    return [str(name) for name in fields]


async def retrieve_session(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    expand = _expand(request[PARAMS])
    session = request.app[STATE].get_session(request[SCOPE], request.match_info["id"])
    return json_response(session.to_api(expand))


async def retrieve_payment_intent(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["client_secret", "expand"])
    intent_id = request.match_info["id"]
    for session in EmulatorState.sessions_of(request[SCOPE]):
        if session.payment_intent is not None and session.payment_intent.id == intent_id:
            return json_response(session.payment_intent.to_api())
    raise errors.no_such("payment_intent", intent_id, "intent")


async def expire_session(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    expand = _expand(request[PARAMS])
    state = request.app[STATE]
    session, event = state.expire_via_api(
        request[SCOPE], request.match_info["id"], request[REQUEST_ID],
        request.headers.get("Idempotency-Key"),
    )
    request[OBJECT_ID] = session.id
    request.app[DISPATCHER].dispatch_later(event)
    return json_response(session.to_api(expand))


async def list_sessions(request: web.Request) -> web.Response:
    params = request[PARAMS]
    check_params(params, [
        "created", "customer", "customer_details", "ending_before", "expand", "limit",
        "payment_intent", "payment_link", "starting_after", "status", "subscription",
    ])
    sessions = EmulatorState.sessions_of(request[SCOPE])
    if "status" in params:
        sessions = [s for s in sessions if s.status == params["status"]]
    if "payment_intent" in params:
        sessions = [s for s in sessions if s.payment_intent is not None
                    and s.payment_intent.id == params["payment_intent"]]
    return json_response(page(
        [s.to_api() for s in sessions], params, "/v1/checkout/sessions", "checkout.session",
    ))


async def list_line_items(request: web.Request) -> web.Response:
    params = request[PARAMS]
    check_params(params, ["ending_before", "expand", "limit", "starting_after"])
    session = request.app[STATE].get_session(request[SCOPE], request.match_info["id"])
    items = [i.to_api(session.livemode, session.created) for i in session.line_items]
    url = f"/v1/checkout/sessions/{session.id}/line_items"
    return json_response(page(items, params, url, "item"))


async def list_events(request: web.Request) -> web.Response:
    params = request[PARAMS]
    check_params(params, [
        "created", "delivery_success", "ending_before", "expand", "limit", "starting_after",
        "type", "types",
    ])
    events = EmulatorState.events_of(request[SCOPE])
    if "type" in params:
        events = [e for e in events if _type_matches(e.type, str(params["type"]))]
    if isinstance(params.get("types"), list):
        events = [e for e in events if e.type in params["types"]]
    return json_response(page([e.to_api() for e in events], params, "/v1/events", "event"))


async def retrieve_event(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    event_id = request.match_info["id"]
    for event in EmulatorState.events_of(request[SCOPE]):
        if event.id == event_id:
            return json_response(event.to_api())
    raise errors.no_such("event", event_id, "id")


def _type_matches(event_type: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def page(items: list[JsonObject], params: Params, url: str, object_name: str) -> JsonObject:
    limit = 10
    if "limit" in params:
        raw: Any = params["limit"]
        if not isinstance(raw, str) or not raw.isdigit():
            raise errors.invalid_integer("limit", raw)
        limit = int(raw)
        if not 1 <= limit <= 100:
            raise errors.invalid(
                "limit", "This value must be between 1 and 100.", "parameter_invalid_integer",
            )
    ids = [item["id"] for item in items]
    for cursor, forward in (("starting_after", True), ("ending_before", False)):
        if cursor in params:
            if params[cursor] not in ids:
                raise errors.no_such(object_name, str(params[cursor]), cursor)
            at = ids.index(params[cursor])
            items = items[at + 1:] if forward else items[:at][-limit:]
            break
    return {
        "object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url,
    }


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions", list_sessions)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_post("/v1/checkout/sessions/{id}/expire", expire_session)
    app.router.add_get("/v1/checkout/sessions/{id}/line_items", list_line_items)
    app.router.add_get("/v1/payment_intents/{id}", retrieve_payment_intent)
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/v1/events/{id}", retrieve_event)
