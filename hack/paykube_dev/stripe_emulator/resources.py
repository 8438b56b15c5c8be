"""`/v1/account`, `/v1/accounts/{id}` and `/v1/webhook_endpoints`: the account's own setup."""

from __future__ import annotations

from aiohttp import web

from . import errors
from .api import check_params, json_response, page
from .appkeys import OBJECT_ID, PARAMS, SCOPE, STATE
from .endpoints import update_endpoint
from .model import mask_key


async def retrieve_own_account(request: web.Request) -> web.Response:
    """The key's account, or the connected one named by `Stripe-Account`."""
    check_params(request[PARAMS], ["expand"])
    return json_response(request[SCOPE].account.to_api())


async def retrieve_account(request: web.Request) -> web.Response:
    """A platform may read its connected accounts; anyone may read their own."""
    check_params(request[PARAMS], ["expand"])
    scope, account_id = request[SCOPE], request.match_info["id"]
    if account_id == scope.account.id:
        return json_response(scope.account.to_api())
    state = request.app[STATE]
    target = state.accounts.get(account_id)
    if not state.book.connected_to(scope.account):
        raise errors.not_a_platform()
    if target is None or target.platform != scope.account.id:
        raise errors.account_invalid(mask_key(scope.key), account_id)
    return json_response(target.to_api())


async def retrieve_balance(request: web.Request) -> web.Response:
    """Stripe's balance: the cheapest object that says which mode a key is in."""
    check_params(request[PARAMS], ["expand"])
    livemode = request[SCOPE].livemode
    return json_response({"object": "balance", "livemode": livemode,
                          "available": [{"amount": 0, "currency": "usd",
                                         "source_types": {"card": 0}}],
                          "pending": [{"amount": 0, "currency": "usd",
                                       "source_types": {"card": 0}}]})


async def create_endpoint(request: web.Request) -> web.Response:
    endpoint = request.app[STATE].create_endpoint(request[SCOPE], request[PARAMS])
    request[OBJECT_ID] = endpoint.id
    return json_response(endpoint.to_stripe(with_secret=True))


async def list_endpoints(request: web.Request) -> web.Response:
    params = request[PARAMS]
    check_params(params, ["ending_before", "expand", "limit", "starting_after"])
    endpoints = request.app[STATE].endpoints_of(request[SCOPE])
    return json_response(page(
        [e.to_stripe() for e in endpoints], params, "/v1/webhook_endpoints", "webhook_endpoint",
    ))


async def retrieve_endpoint(request: web.Request) -> web.Response:
    check_params(request[PARAMS], ["expand"])
    endpoint = request.app[STATE].get_endpoint(request[SCOPE], request.match_info["id"])
    return json_response(endpoint.to_stripe())


async def update_endpoint_handler(request: web.Request) -> web.Response:
    endpoint = request.app[STATE].get_endpoint(request[SCOPE], request.match_info["id"])
    update_endpoint(endpoint, request[PARAMS])
    return json_response(endpoint.to_stripe())


async def delete_endpoint(request: web.Request) -> web.Response:
    check_params(request[PARAMS], [])
    state = request.app[STATE]
    endpoint = state.get_endpoint(request[SCOPE], request.match_info["id"])
    del state.endpoints[endpoint.id]
    return json_response({"id": endpoint.id, "object": "webhook_endpoint", "deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/account", retrieve_own_account)
    r.add_get("/v1/accounts/{id}", retrieve_account)
    r.add_get("/v1/balance", retrieve_balance)
    r.add_post("/v1/webhook_endpoints", create_endpoint)
    r.add_get("/v1/webhook_endpoints", list_endpoints)
    r.add_get("/v1/webhook_endpoints/{id}", retrieve_endpoint)
    r.add_post("/v1/webhook_endpoints/{id}", update_endpoint_handler)
    r.add_delete("/v1/webhook_endpoints/{id}", delete_endpoint)
