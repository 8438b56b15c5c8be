"""`/v1/refunds` and `/v1/charges/{id}`: refunds of a paid session's PaymentIntent.

They pass the same middleware as every `/v1` request: keys, rate limit, idempotency keys
and injected faults apply as they do to sessions.
"""

from __future__ import annotations

from aiohttp import web

from .api import check_params, json_response, page
from .appkeys import DISPATCHER, OBJECT_ID, PARAMS, REQUEST_ID, SCOPE, STATE
from .state import EmulatorState


async def create_refund(request: web.Request) -> web.Response:
    state = request.app[STATE]
    refund, events = state.create_refund(
        request[SCOPE], request[PARAMS], request_id=request[REQUEST_ID],
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    request[OBJECT_ID] = refund.id
    for event in events:
        request.app[DISPATCHER].dispatch_later(event)
    return json_response(refund.to_api())


async def retrieve_refund(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    refund = request.app[STATE].get_refund(request[SCOPE], request.match_info["id"])
    return json_response(refund.to_api())


async def list_refunds(request: web.Request) -> web.Response:
    params = request[PARAMS]
    check_params(params, ["charge", "created", "ending_before", "expand", "limit",
                          "payment_intent", "starting_after"])
    refunds = request.app[STATE].refunds_of(request[SCOPE])
    if "payment_intent" in params:
        refunds = [r for r in refunds if r.payment_intent == params["payment_intent"]]
    if "charge" in params:
        refunds = [r for r in refunds if r.charge == params["charge"]]
    return json_response(page([r.to_api() for r in refunds], params, "/v1/refunds", "refund"))


async def retrieve_charge(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    state: EmulatorState = request.app[STATE]
    return json_response(state.charge(request[SCOPE], request.match_info["id"]).to_api())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/refunds", create_refund)
    r.add_get("/v1/refunds", list_refunds)
    r.add_get("/v1/refunds/{id}", retrieve_refund)
    r.add_get("/v1/charges/{id}", retrieve_charge)
