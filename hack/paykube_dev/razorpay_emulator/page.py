"""A bare hosted payment page (`/i/{code}`, the link's `short_url` when the emulator runs
with `hosted_links`) for demos: pay the whole amount, then go back to `callback_url` with
Razorpay's signed query (`razorpay_signature` over `id|reference_id|status|payment_id`)."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from aiohttp import web

from .appkeys import DISPATCHER, STATE
from .state import TransitionError

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Payment link (paykube Razorpay emulator)</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>{amount} {currency}</h1>
<p>{description}</p>
<p>Payment link <code>{id}</code> is <b>{status}</b> ({paid} paid).</p>
<form method="post" action="{code}/pay"><button>Pay</button></form>
</body></html>
"""


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


async def show(request: web.Request) -> web.Response:
    link = request.app[STATE].link_by_short_code(request.match_info["code"])
    if link is None:
        raise web.HTTPNotFound(text="This payment link does not exist.")
    page = _PAGE.format(
        amount=_money(link.amount), currency=html.escape(link.currency),
        description=html.escape(link.description or ""), id=html.escape(link.id),
        status=link.status, paid=_money(link.amount_paid),
        code=html.escape(request.match_info["code"]),
    )
    return web.Response(text=page, content_type="text/html")


async def pay(request: web.Request) -> web.Response:
    state = request.app[STATE]
    link = state.link_by_short_code(request.match_info["code"])
    if link is None:
        raise web.HTTPNotFound()
    try:
        event = state.transition(link.id, "pay")
    except TransitionError as exc:
        raise web.HTTPConflict(text=str(exc)) from exc
    request.app[DISPATCHER].dispatch_later(event)
    if link.callback_url is None:
        raise web.HTTPSeeOther(f"/i/{request.match_info['code']}")
    payment_id = link.payments[-1].id
    query = urlencode({
        "razorpay_payment_id": payment_id, "razorpay_payment_link_id": link.id,
        "razorpay_payment_link_reference_id": link.reference_id or "",
        "razorpay_payment_link_status": link.status,
        "razorpay_signature": state.callback_signature(link, payment_id),
    })
    separator = "&" if "?" in link.callback_url else "?"
    raise web.HTTPSeeOther(f"{link.callback_url}{separator}{query}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/i/{code}", show)
    app.router.add_post("/i/{code}/pay", pay)
