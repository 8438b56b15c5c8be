"""A bare hosted-checkout page (`/c/pay/{id}`) for demos: pay, pay later, or go back."""

from __future__ import annotations

import html

from aiohttp import web

from .appkeys import DISPATCHER, STATE
from .checkout import money
from .state import TransitionError

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout (paykube Stripe emulator)</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>{amount} {currency}</h1>
<ul>{items}</ul>
<p>Session <code>{id}</code> is <b>{status}</b> / {payment_status}.</p>
<form method="post" action="{id}/paid"><button>Pay</button></form>
<form method="post" action="{id}/async_pending"><button>Pay by bank debit (pending)</button></form>
<p><a href="{cancel}">Back to the merchant</a></p>
</body></html>
"""


async def show(request: web.Request) -> web.Response:
    session = request.app[STATE].sessions.get(request.match_info["id"])
    if session is None:
        raise web.HTTPNotFound(text="Something went wrong: this checkout session does not exist.")
    items = "".join(
        f"<li>{html.escape(i.name)} x {i.quantity}: {money(i.amount, i.currency)}</li>"
        for i in session.line_items
    )
    page = _PAGE.format(
        amount=money(session.amount_total, session.currency),
        currency=session.currency.upper(), items=items,
        id=html.escape(session.id), status=session.status,
        payment_status=session.payment_status,
        cancel=html.escape(session.cancel_url or "#"),
    )
    return web.Response(text=page, content_type="text/html")


async def submit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    session_id, action = request.match_info["id"], request.match_info["action"]
    if action not in ("paid", "async_pending") or session_id not in state.sessions:
        raise web.HTTPNotFound()
    try:
        event = state.transition(session_id, "paid" if action == "paid" else "async_pending")
    except TransitionError as exc:
        raise web.HTTPConflict(text=str(exc)) from exc
    request.app[DISPATCHER].dispatch_later(event)
    target = (state.sessions[session_id].success_url or "/").replace(
        "{CHECKOUT_SESSION_ID}", session_id,
    )
    raise web.HTTPSeeOther(target)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/c/pay/{id}", show)
    app.router.add_post("/c/pay/{id}/{action}", submit)
