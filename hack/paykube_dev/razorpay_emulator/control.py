"""Test control endpoints under `/_emulator/...` (JSON in, JSON out, no API key); faults,
held answers, the request log and deliveries are the shared ones."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from paykube_dev.psp_emulator import control as common
from paykube_dev.psp_emulator.clock import JsonObject

from .accounts import KEY_ID, AccountBook, account_id_for_key, is_live
from .appkeys import DISPATCHER, STATE
from .delivery import event_payload
from .errors import RazorpayError
from .model import Event, WebhookEndpoint
from .refunds import RefundTransitionError
from .state import ACTIONS, EVENTS, Action, RazorpayState, TransitionError

PREFIX = common.PREFIX
ok, fail, read_body = common.ok, common.fail, common.read_body


async def health(request: web.Request) -> web.Response:
    return ok({"ok": True, "psp": "razorpay"})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return ok({"ok": True})


async def stats(request: web.Request) -> web.Response:
    return ok(request.app[STATE].stats())


def _accounts_view(book: AccountBook, account_ids: list[str]) -> JsonObject:
    return {"data": [book.accounts[a].to_control() for a in account_ids]}


async def create_account(request: web.Request) -> web.Response:
    """`{"id"?: "acc_...", "keys": {"rzp_test_...": "secret", ...}, "name"?}`."""
    state = request.app[STATE]
    body = await read_body(request)
    keys = body.get("keys") or {}
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        return fail(400, "keys must map key ids to secrets")
    try:
        account = state.book.create(now=state.clock.now_int(), account_id=body.get("id"),
                                    keys=cast(dict[str, str], keys), name=body.get("name"))
    except ValueError as exc:
        return fail(409, str(exc))
    return ok(account.to_control())


async def list_accounts(request: web.Request) -> web.Response:
    """`?key_id=`: only the account of that key id (if it is known)."""
    book = request.app[STATE].book
    key_id = request.query.get("key_id")
    if key_id is not None:
        owner = book.key_owner.get(key_id)
        return ok(_accounts_view(book, [owner] if owner else []))
    return ok(_accounts_view(book, list(book.accounts)))


async def add_key(request: web.Request) -> web.Response:
    """`{"key_id", "secret"}`: one more key of the account (rotation)."""
    state = request.app[STATE]
    account = state.book.accounts.get(request.match_info["id"])
    if account is None:
        return fail(404, f"no account {request.match_info['id']}")
    body = await read_body(request)
    key_id, secret = body.get("key_id"), body.get("secret")
    if not isinstance(key_id, str) or not isinstance(secret, str):
        return fail(400, "key_id and secret are required")
    try:
        state.book.add_key(account, key_id, secret)
    except ValueError as exc:
        return fail(409, str(exc))
    return ok(account.to_control())


async def revoke_key(request: web.Request) -> web.Response:
    """`{"key_id"}`: later requests with it get Razorpay's 401."""
    key_id = (await read_body(request)).get("key_id")
    if not isinstance(key_id, str):
        return fail(400, "key_id is required")
    request.app[STATE].book.revoked.add(key_id)
    return ok({"revoked": True})


async def list_links(request: web.Request) -> web.Response:
    state = request.app[STATE]
    reference, account = request.query.get("reference_id"), request.query.get("account")
    return ok({"data": [
        link.to_api() | {"account_id": link.account_id, "livemode": link.livemode}
        for link in state.links.values()
        if (reference is None or link.reference_id == reference)
        and (account is None or link.account_id == account)
    ]})


async def get_link(request: web.Request) -> web.Response:
    link = request.app[STATE].links.get(request.match_info["id"])
    if link is None:
        return fail(404, f"no payment link {request.match_info['id']}")
    return ok(link.to_api() | {"account_id": link.account_id, "livemode": link.livemode})


async def transition(request: web.Request) -> web.Response:
    """`POST /_emulator/links/{id}/{action}` with `{"amount"?, "email"?, "contact"?,
    "wait": true}`; action: pay, part_pay (or part-pay), expire, cancel."""
    state = request.app[STATE]
    link_id, action = request.match_info["id"], request.match_info["action"].replace("-", "_")
    if action not in ACTIONS:
        return fail(404, f"unknown action {action}; one of {', '.join(ACTIONS)}")
    if link_id not in state.links:
        return fail(404, f"no payment link {link_id}")
    body = await read_body(request)
    amount = body.get("amount")
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
        return fail(400, "amount must be an integer")
    try:
        event = state.transition(link_id, cast(Action, action), amount=amount,
                                 email=body.get("email"), contact=body.get("contact"))
    except TransitionError as exc:
        return fail(409, str(exc))
    sent = await request.app[DISPATCHER].dispatch_now_or_later(event, body.get("wait", True))
    return ok({
        "link": state.links[link_id].to_api(), "event": event.to_control(),
        "deliveries": [d.to_api() for d in sent],
    })


async def list_events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    wanted = {"link_id": request.query.get("link"), "event": request.query.get("event"),
              "account_id": request.query.get("account")}
    return ok({"data": [
        e.to_control() for e in state.events.values()
        if all(v is None or getattr(e, k) == v for k, v in wanted.items())
    ]})


async def get_event(request: web.Request) -> web.Response:
    event = request.app[STATE].events.get(request.match_info["id"])
    if event is None:
        return fail(404, f"no event {request.match_info['id']}")
    return ok(event.to_control())


async def event_body(request: web.Request) -> web.Response:
    """The exact bytes every delivery of this event carries (for signing tests)."""
    event = request.app[STATE].events.get(request.match_info["id"])
    if event is None:
        return fail(404, f"no event {request.match_info['id']}")
    return web.Response(body=event_payload(event), content_type="application/json")


async def deliver(request: web.Request) -> web.Response:
    """Deliver again, same event id: `{"url"?, "secret"?, "endpoint_id"?}`."""
    state = request.app[STATE]
    event = state.events.get(request.match_info["id"])
    if event is None:
        return fail(404, f"no event {request.match_info['id']}")
    body = await read_body(request)
    endpoint_id = body.get("endpoint_id")
    if endpoint_id is not None and endpoint_id not in state.endpoints:
        return fail(404, f"no webhook {endpoint_id}")
    try:
        deliveries = await request.app[DISPATCHER].redeliver(
            event, url=body.get("url"), secret=body.get("secret"), endpoint_id=endpoint_id)
    except ValueError as exc:
        return fail(400, str(exc))
    return ok({"data": [d.to_api() for d in deliveries]})


async def add_webhook(request: web.Request) -> web.Response:
    """`{"url", "secret", "account_id"? | "key_id"?, "events"?, "livemode"?,
    "retry_delays"?, "timeout"?}`: `key_id` scopes the webhook to that key's account and
    mode; `account_id` to the account; neither: every account's events."""
    state = request.app[STATE]
    body = await read_body(request)
    url, secret = body.get("url"), body.get("secret")
    if not isinstance(url, str) or not isinstance(secret, str) or not secret:
        return fail(400, "url and secret are required")
    events: Any = body.get("events") or ["*"]
    if not isinstance(events, list) or any(e != "*" and e not in EVENTS for e in events):
        return fail(400, f"events must be a list of {', '.join(EVENTS)} or '*'")
    account_id, livemode = body.get("account_id"), body.get("livemode")
    key_id = body.get("key_id")
    if key_id is not None:
        if not isinstance(key_id, str) or not KEY_ID.match(key_id):
            return fail(400, "key_id must be a Razorpay key id")
        # A key not used yet: its account will get the id derived from it.
        owner = state.book.key_owner.get(key_id) or account_id_for_key(key_id)
        account_id, livemode = owner, is_live(key_id)
    elif account_id is not None and account_id not in state.book.accounts:
        return fail(404, f"no account {account_id}")
    endpoint = WebhookEndpoint(
        url=url, secret=secret, account_id=account_id, events=[str(e) for e in events],
        livemode=None if livemode is None else bool(livemode),
        retry_delays=[float(d) for d in body.get("retry_delays") or state.retry_delays],
        timeout=float(body.get("timeout", 10.0)),
    )
    state.endpoints[endpoint.id] = endpoint
    return ok(endpoint.to_api())


async def list_webhooks(request: web.Request) -> web.Response:
    account = request.query.get("account")
    return ok({"data": [e.to_api() for e in request.app[STATE].endpoints.values()
                        if account is None or e.account_id == account]})


async def delete_webhook(request: web.Request) -> web.Response:
    removed = request.app[STATE].endpoints.pop(request.match_info["id"], None)
    if removed is None:
        return fail(404, f"no webhook {request.match_info['id']}")
    return ok({"deleted": True, "id": removed.id})


async def clock(request: web.Request) -> web.Response:
    """`{"advance": seconds}` moves the clock; due links expire (and are announced) at once."""
    state = request.app[STATE]
    expired: list[str] = []
    if request.method == "POST":
        state.clock.advance(float((await read_body(request)).get("advance", 0)))
        for event in state.sweep():
            expired.append(event.link_id)
            await request.app[DISPATCHER].dispatch(event)
    return ok({"now": state.clock.now(), "offset": state.clock.offset, "expired": expired})


async def refund_mode(request: web.Request) -> web.Response:
    """`{"status": "pending" | "processed", "payment_id"?}`: how the next refunds of that
    payment (or, without one, of every payment) start."""
    state = request.app[STATE]
    body = await read_body(request)
    payment = body.get("payment_id")
    try:
        state.set_refund_mode(str(body.get("status", "processed")),
                              payment if isinstance(payment, str) else None)
    except RefundTransitionError as exc:
        return fail(400, str(exc))
    return ok({"modes": dict(state.refund_modes)})


async def list_refunds(request: web.Request) -> web.Response:
    payment = request.query.get("payment_id")
    return ok({"data": [r.to_api() for r in request.app[STATE].refunds.values()
                        if payment is None or r.payment_id == payment]})


async def move_refund(request: web.Request) -> web.Response:
    """`POST /_emulator/refunds/{id}/{action}` `{"wait"?}`; action: processed, failed."""
    state = request.app[STATE]
    body = await read_body(request)
    try:
        refund, event = state.move_refund(request.match_info["id"],
                                          request.match_info["action"])
    except KeyError:
        return fail(404, f"no refund {request.match_info['id']}")
    except RefundTransitionError as exc:
        return fail(409, str(exc))
    return await _refund_answer(request, refund.to_api(), [event], body.get("wait", True))


async def dashboard_refund(request: web.Request) -> web.Response:
    """`POST /_emulator/payments/{id}/refunds {"amount"?, "wait"?}`: a refund made on the
    Dashboard (no notes, no receipt), with its events."""
    state = request.app[STATE]
    body = await read_body(request)
    amount = body.get("amount")
    try:
        refund, events = state.create_refund(None, request.match_info["id"],
                                             {} if amount is None else {"amount": amount})
    except RazorpayError as exc:
        status = 404 if exc.field == "id" else 409
        return fail(status, exc.description)
    return await _refund_answer(request, refund.to_api(), events, body.get("wait", True))


async def _refund_answer(request: web.Request, refund: JsonObject, events: list[Event],
                         wait: object) -> web.Response:
    dispatcher = request.app[DISPATCHER]
    deliveries = []
    for event in events:
        deliveries += await dispatcher.dispatch_now_or_later(event, bool(wait))
    return ok({"refund": refund, "events": [e.to_control() for e in events],
               "deliveries": [d.to_api() for d in deliveries]})


def add_routes(app: web.Application) -> None:
    state: RazorpayState = app[STATE]
    common.add_routes(app, state)
    r = app.router
    r.add_get(f"{PREFIX}/health", health)
    r.add_post(f"{PREFIX}/reset", reset)
    r.add_get(f"{PREFIX}/stats", stats)
    r.add_post(f"{PREFIX}/accounts", create_account)
    r.add_get(f"{PREFIX}/accounts", list_accounts)
    r.add_post(f"{PREFIX}/accounts/{{id}}/keys", add_key)
    r.add_post(f"{PREFIX}/revoked-keys", revoke_key)
    r.add_get(f"{PREFIX}/links", list_links)
    r.add_get(f"{PREFIX}/links/{{id}}", get_link)
    r.add_post(f"{PREFIX}/links/{{id}}/{{action}}", transition)
    r.add_post(f"{PREFIX}/refund-mode", refund_mode)
    r.add_get(f"{PREFIX}/refunds", list_refunds)
    r.add_post(f"{PREFIX}/refunds/{{id}}/{{action}}", move_refund)
    r.add_post(f"{PREFIX}/payments/{{id}}/refunds", dashboard_refund)
    r.add_get(f"{PREFIX}/events", list_events)
    r.add_get(f"{PREFIX}/events/{{id}}", get_event)
    r.add_get(f"{PREFIX}/events/{{id}}/payload", event_body)
    r.add_post(f"{PREFIX}/events/{{id}}/deliver", deliver)
    r.add_post(f"{PREFIX}/webhooks", add_webhook)
    r.add_get(f"{PREFIX}/webhooks", list_webhooks)
    r.add_delete(f"{PREFIX}/webhooks/{{id}}", delete_webhook)
    r.add_get(f"{PREFIX}/clock", clock)
    r.add_post(f"{PREFIX}/clock", clock)
