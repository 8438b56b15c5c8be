"""Test control endpoints under `/_emulator/...` (JSON in, JSON out, no API key)."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from paykube_dev.psp_emulator import control as common

from .accounts import Account, AccountBook, is_live, is_secret_key
from .appkeys import DISPATCHER, STATE
from .delivery import event_payload
from .errors import StripeError
from .model import Event, JsonObject, WebhookEndpoint
from .refunds import RefundTransitionError
from .state import ACTIONS, Action, EmulatorState, TransitionError

PREFIX = "/_emulator"


_ok, _fail, _body = common.ok, common.fail, common.read_body


async def health(request: web.Request) -> web.Response:
    return _ok({"ok": True, "api_version": request.app[STATE].api_version})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _ok({"ok": True})


async def stats(request: web.Request) -> web.Response:
    return _ok(request.app[STATE].stats())


async def list_sessions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    reference = request.query.get("client_reference_id")
    data = [
        s.to_api() for s in state.sessions.values()
        if reference is None or s.client_reference_id == reference
    ]
    return _ok({"data": data})


async def get_session(request: web.Request) -> web.Response:
    session = request.app[STATE].sessions.get(request.match_info["id"])
    if session is None:
        return _fail(404, f"no session {request.match_info['id']}")
    return _ok(session.to_api())


async def transition(request: web.Request) -> web.Response:
    """`POST /_emulator/sessions/{id}/{action}` `{"wait": true, "email": ..., "name": ...}`."""
    state = request.app[STATE]
    session_id, action = request.match_info["id"], request.match_info["action"]
    if action not in ACTIONS:
        return _fail(404, f"unknown action {action}; one of {', '.join(ACTIONS)}")
    if session_id not in state.sessions:
        return _fail(404, f"no session {session_id}")
    body = await _body(request)
    try:
        event = state.transition(
            session_id, cast(Action, action), email=body.get("email"), name=body.get("name"),
        )
    except TransitionError as exc:
        return _fail(409, str(exc))
    sent = await request.app[DISPATCHER].dispatch_now_or_later(event, body.get("wait", True))
    deliveries = [d.to_api() for d in sent]
    return _ok({
        "session": state.sessions[session_id].to_api(), "event": event.to_api(),
        "deliveries": deliveries,
    })


async def list_events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    kind, session = request.query.get("type"), request.query.get("session")
    account = request.query.get("account")
    data = [
        e.to_api() for e in state.events.values()
        if (kind is None or e.type == kind) and (session is None or e.session_id == session)
        and (account is None or e.account_id == account)
    ]
    return _ok({"data": data})


async def get_event(request: web.Request) -> web.Response:
    event = request.app[STATE].events.get(request.match_info["id"])
    if event is None:
        return _fail(404, f"no event {request.match_info['id']}")
    return _ok(event.to_api())


async def event_body(request: web.Request) -> web.Response:
    """The exact bytes a delivery of this event carries (for signing tests)."""
    event = request.app[STATE].events.get(request.match_info["id"])
    if event is None:
        return _fail(404, f"no event {request.match_info['id']}")
    return web.Response(body=event_payload(event), content_type="application/json")


async def deliver(request: web.Request) -> web.Response:
    """Re-deliver: `{"url"?, "secret"?, "secrets"?, "timestamp"?, "endpoint_id"?}`."""
    state = request.app[STATE]
    event = state.events.get(request.match_info["id"])
    if event is None:
        return _fail(404, f"no event {request.match_info['id']}")
    body = await _body(request)
    secrets: list[str] | None = body.get("secrets")
    if body.get("secret") is not None:
        secrets = [str(body["secret"])]
    endpoint_id = body.get("endpoint_id")
    if endpoint_id is not None and endpoint_id not in state.endpoints:
        return _fail(404, f"no webhook endpoint {endpoint_id}")
    try:
        deliveries = await request.app[DISPATCHER].redeliver(
            event, url=body.get("url"), secrets=secrets, timestamp=body.get("timestamp"),
            endpoint_id=endpoint_id,
        )
    except ValueError as exc:
        return _fail(400, str(exc))
    return _ok({"data": [d.to_api() for d in deliveries]})


async def add_endpoint(request: web.Request) -> web.Response:
    """`{"url", "secret" | "secrets", "api_key"?, "account_id"?, "livemode"?, "connect"?,
    "api_version"?, "enabled_events"?, "retry_delays"?, "timeout"?}`.

    `api_key` scopes the endpoint to that key's account and mode; `account_id` to an account
    (`livemode` null: both modes); neither: every event of every account."""
    state = request.app[STATE]
    body = await _body(request)
    url = body.get("url")
    secrets = body.get("secrets") or ([body["secret"]] if body.get("secret") else [])
    if not isinstance(url, str) or not secrets:
        return _fail(400, "url and secret (or secrets) are required")
    api_key, account_id = body.get("api_key"), body.get("account_id")
    livemode = body.get("livemode")
    if api_key is not None:
        if not isinstance(api_key, str) or not is_secret_key(api_key):
            return _fail(400, "api_key must be a secret or restricted key")
        account = state.book.for_key(api_key, state.clock.now_int())
        if account_id is not None and account_id != account.id:
            return _fail(400, f"api_key belongs to {account.id}, not {account_id}")
        account_id, livemode = account.id, is_live(api_key)
    elif account_id is not None and account_id not in state.accounts:
        return _fail(404, f"no account {account_id}")
    endpoint = WebhookEndpoint(
        url=url, secrets=[str(s) for s in secrets], api_key=api_key,
        enabled_events=list(body.get("enabled_events") or ["*"]),
        retry_delays=[float(d) for d in body.get("retry_delays") or []],
        timeout=float(body.get("timeout", 10.0)), account_id=account_id,
        livemode=None if livemode is None else bool(livemode),
        connect=bool(body.get("connect", False)), api_version=body.get("api_version"),
        created=state.clock.now_int(),
    )
    state.endpoints[endpoint.id] = endpoint
    return _ok(endpoint.to_api())


async def list_endpoints(request: web.Request) -> web.Response:
    """`?account=acct_...`: only that account's endpoints (its Connect ones included)."""
    account = request.query.get("account")
    return _ok({"data": [
        e.to_api() for e in request.app[STATE].endpoints.values()
        if account is None or e.account_id == account
    ]})


async def delete_endpoint(request: web.Request) -> web.Response:
    removed = request.app[STATE].endpoints.pop(request.match_info["id"], None)
    if removed is None:
        return _fail(404, f"no webhook endpoint {request.match_info['id']}")
    return _ok({"deleted": True, "id": removed.id})


async def clock(request: web.Request) -> web.Response:
    """`{"advance": seconds}` moves the emulator's clock; due sessions expire at once."""
    state = request.app[STATE]
    expired: list[str] = []
    if request.method == "POST":
        body = await _body(request)
        state.clock.advance(float(body.get("advance", 0)))
        dispatcher = request.app[DISPATCHER]
        for event in state.sweep():
            expired.append(event.session_id)
            await dispatcher.dispatch(event)
    return _ok({"now": state.clock.now(), "offset": state.clock.offset, "expired": expired})


async def rate_limit(request: web.Request) -> web.Response:
    """`{"per_second": n | null}`: Stripe's per-account request rate limit."""
    body = await _body(request)
    value: Any = body.get("per_second")
    request.app[STATE].rate_limit = None if value is None else float(value)
    return _ok({"per_second": request.app[STATE].rate_limit})


async def revoke_key(request: web.Request) -> web.Response:
    """`{"key": "sk_test_..."}`: later requests with it get 401 `api_key_expired`."""
    key = (await _body(request)).get("key")
    if not isinstance(key, str):
        return _fail(400, "key is required")
    request.app[STATE].revoked_keys.add(key)
    return _ok({"revoked": True})


async def create_account(request: web.Request) -> web.Response:
    """`{"id"?, "keys"?, "platform"?, "email"?, "business_name"?, "country"?,
    "default_currency"?}`; the id defaults to the one derived from the first key."""
    state = request.app[STATE]
    body = await _body(request)
    keys = body.get("keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return _fail(400, "keys must be a list of strings")
    try:
        account = state.book.create(
            now=state.clock.now_int(), account_id=body.get("id"), keys=keys,
            platform=body.get("platform"), email=body.get("email"),
            business_name=body.get("business_name"), country=body.get("country"),
            default_currency=body.get("default_currency"),
        )
    except ValueError as exc:
        return _fail(409, str(exc))
    return _ok(_account_view(state.book, account))


def _account_view(book: AccountBook, account: Account) -> JsonObject:
    view = account.to_control()
    view["connected"] = [a.id for a in book.connected_to(account)]
    return view


async def list_accounts(request: web.Request) -> web.Response:
    """`?key=sk_...`: the account of that key (created as the API would on first use)."""
    state = request.app[STATE]
    key = request.query.get("key")
    if key is not None:
        if not is_secret_key(key):
            return _fail(400, "key must be a secret or restricted key")
        accounts = [state.book.for_key(key, state.clock.now_int())]
    else:
        accounts = list(state.accounts.values())
    return _ok({"data": [_account_view(state.book, a) for a in accounts]})


async def get_account(request: web.Request) -> web.Response:
    state = request.app[STATE]
    account = state.accounts.get(request.match_info["id"])
    if account is None:
        return _fail(404, f"no account {request.match_info['id']}")
    return _ok(_account_view(state.book, account))


async def add_key(request: web.Request) -> web.Response:
    """`{"key": "sk_test_..."}`: one more key for the account (rotation)."""
    state = request.app[STATE]
    account = state.accounts.get(request.match_info["id"])
    if account is None:
        return _fail(404, f"no account {request.match_info['id']}")
    key = (await _body(request)).get("key")
    if not isinstance(key, str):
        return _fail(400, "key is required")
    try:
        state.book.add_key(account, key)
    except ValueError as exc:
        return _fail(409, str(exc))
    return _ok(_account_view(state.book, account))


async def connect(request: web.Request) -> web.Response:
    """`POST /_emulator/accounts/{platform}/connected {"account": "acct_..."}`."""
    state = request.app[STATE]
    platform = state.accounts.get(request.match_info["id"])
    account_id = (await _body(request)).get("account")
    account = state.accounts.get(account_id) if isinstance(account_id, str) else None
    if platform is None or account is None:
        missing = request.match_info["id"] if platform is None else account_id
        return _fail(404, f"no account {missing}")
    try:
        state.book.connect(platform, account)
    except ValueError as exc:
        return _fail(409, str(exc))
    return _ok(_account_view(state.book, platform))


async def disconnect(request: web.Request) -> web.Response:
    state = request.app[STATE]
    account = state.accounts.get(request.match_info["account"])
    if account is None or account.platform != request.match_info["id"]:
        return _fail(404, f"{request.match_info['account']} is not connected to "
                          f"{request.match_info['id']}")
    account.platform = None
    return _ok(_account_view(state.book, account))


async def refund_mode(request: web.Request) -> web.Response:
    """`{"status": "pending" | "requires_action" | "succeeded", "payment_intent"?}`: how the
    next refunds of that PaymentIntent (or, without one, of every intent) start."""
    state = request.app[STATE]
    body = await _body(request)
    intent = body.get("payment_intent")
    try:
        state.set_refund_mode(str(body.get("status", "succeeded")),
                              intent if isinstance(intent, str) else None)
    except RefundTransitionError as exc:
        return _fail(400, str(exc))
    return _ok({"modes": dict(state.refund_modes)})


async def list_refunds(request: web.Request) -> web.Response:
    intent = request.query.get("payment_intent")
    return _ok({"data": [r.to_api() for r in request.app[STATE].refunds.values()
                         if intent is None or r.payment_intent == intent]})


async def get_refund(request: web.Request) -> web.Response:
    refund = request.app[STATE].refunds.get(request.match_info["id"])
    if refund is None:
        return _fail(404, f"no refund {request.match_info['id']}")
    return _ok(refund.to_api())


async def move_refund(request: web.Request) -> web.Response:
    """`POST /_emulator/refunds/{id}/{action}` `{"failure_reason"?, "wait"?}`; action:
    succeeded, failed (also after succeeded: a bank return), requires_action, canceled."""
    state = request.app[STATE]
    body = await _body(request)
    reason = body.get("failure_reason")
    try:
        refund, events = state.move_refund(request.match_info["id"],
                                           request.match_info["action"],
                                           reason if isinstance(reason, str) else None)
    except KeyError:
        return _fail(404, f"no refund {request.match_info['id']}")
    except RefundTransitionError as exc:
        return _fail(409, str(exc))
    return await _refund_answer(request, refund.to_api(), events, body.get("wait", True))


async def dashboard_refund(request: web.Request) -> web.Response:
    """`POST /_emulator/payment-intents/{id}/refunds {"amount"?, "wait"?}`: a refund made in
    the Dashboard (no metadata, no API request), with its events."""
    state = request.app[STATE]
    body = await _body(request)
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                               or amount < 1):
        return _fail(400, "amount must be a positive integer")
    try:
        refund, events = state.dashboard_refund(request.match_info["id"], amount)
    except KeyError:
        return _fail(404, f"no payment intent {request.match_info['id']}")
    except (RefundTransitionError, StripeError) as exc:
        return _fail(409, str(exc))
    return await _refund_answer(request, refund.to_api(), events, body.get("wait", True))


async def _refund_answer(request: web.Request, refund: JsonObject, events: list[Event],
                         wait: object) -> web.Response:
    dispatcher = request.app[DISPATCHER]
    deliveries = []
    for event in events:
        deliveries += await dispatcher.dispatch_now_or_later(event, bool(wait))
    return _ok({"refund": refund, "events": [e.to_api() for e in events],
                "deliveries": [d.to_api() for d in deliveries]})


def add_routes(app: web.Application) -> None:
    state: EmulatorState = app[STATE]
    common.add_routes(app, state)
    r = app.router
    r.add_get(f"{PREFIX}/health", health)
    r.add_post(f"{PREFIX}/reset", reset)
    r.add_get(f"{PREFIX}/stats", stats)
    r.add_get(f"{PREFIX}/sessions", list_sessions)
    r.add_get(f"{PREFIX}/sessions/{{id}}", get_session)
    r.add_post(f"{PREFIX}/sessions/{{id}}/{{action}}", transition)
    r.add_post(f"{PREFIX}/refund-mode", refund_mode)
    r.add_get(f"{PREFIX}/refunds", list_refunds)
    r.add_get(f"{PREFIX}/refunds/{{id}}", get_refund)
    r.add_post(f"{PREFIX}/refunds/{{id}}/{{action}}", move_refund)
    r.add_post(f"{PREFIX}/payment-intents/{{id}}/refunds", dashboard_refund)
    r.add_get(f"{PREFIX}/events", list_events)
    r.add_get(f"{PREFIX}/events/{{id}}", get_event)
    r.add_get(f"{PREFIX}/events/{{id}}/payload", event_body)
    r.add_post(f"{PREFIX}/events/{{id}}/deliver", deliver)
    r.add_post(f"{PREFIX}/webhook-endpoints", add_endpoint)
    r.add_get(f"{PREFIX}/webhook-endpoints", list_endpoints)
    r.add_delete(f"{PREFIX}/webhook-endpoints/{{id}}", delete_endpoint)
    r.add_get(f"{PREFIX}/clock", clock)
    r.add_post(f"{PREFIX}/clock", clock)
    r.add_post(f"{PREFIX}/rate-limit", rate_limit)
    r.add_post(f"{PREFIX}/revoked-keys", revoke_key)
    r.add_post(f"{PREFIX}/accounts", create_account)
    r.add_get(f"{PREFIX}/accounts", list_accounts)
    r.add_get(f"{PREFIX}/accounts/{{id}}", get_account)
    r.add_post(f"{PREFIX}/accounts/{{id}}/keys", add_key)
    r.add_post(f"{PREFIX}/accounts/{{id}}/connected", connect)
    r.add_delete(f"{PREFIX}/accounts/{{id}}/connected/{{account}}", disconnect)
