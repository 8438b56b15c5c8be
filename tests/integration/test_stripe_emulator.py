"""The Stripe emulator against the official `stripe` SDK, on a real loopback server.

Sync tests use the session-wide emulator thread (`stripe_emulator`); webhook tests run the
emulator and a recording receiver in the test's own loop (`async_stripe_emulator`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
import pytest_asyncio
import stripe
from aiohttp import web

from paykube_dev.services import StripeMock
from paykube_dev.stripe_emulator import (
    AsyncEmulatorControl,
    EmulatorControl,
    EmulatorControlError,
    EmulatorProcess,
    EmulatorThread,
    StripeEmulator,
    account_id_for_key,
    sign_payload,
)
from paykube_dev.stripe_emulator.state import Action

if TYPE_CHECKING:
    from stripe.params.checkout import SessionCreateParams

pytestmark = pytest.mark.integration

SECRET = "whsec_test_emulator_secret"


def session_params(**overrides: Any) -> SessionCreateParams:
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": "https://shop.example/ok?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "line_items": [{
            "price_data": {
                "currency": "usd", "unit_amount": 1250,
                "product_data": {"name": "Annual plan"},
            },
            "quantity": 2,
        }],
        "customer_email": "buyer@example.com",
        "client_reference_id": "3f1c7a52-uid",
        "expires_at": int(time.time()) + 3600,
        "metadata": {"paykube_namespace": "shop", "paykube_name": "order-1"},
    }
    params.update(overrides)
    return cast("SessionCreateParams", {k: v for k, v in params.items() if v is not None})


def error_of(exc: stripe.StripeError) -> dict[str, Any]:
    """The `error` member of a Stripe error answer."""
    body = cast(dict[str, Any], exc.json_body)
    return cast(dict[str, Any], body["error"])


def client_for(emulator: EmulatorThread, key: str, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": emulator.base_url}, max_network_retries=retries,
    )


# --- the API through the SDK ----------------------------------------------------------


def test_create_returns_a_stripe_shaped_open_session(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    params = session_params()
    session = stripe_client.v1.checkout.sessions.create(params)
    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert session.url == f"https://checkout.stripe.com/c/pay/{session.id}"
    assert (session.amount_total, session.currency, session.mode) == (2500, "usd", "payment")
    assert session.expires_at == params["expires_at"]
    assert abs(session.created - time.time()) < 5
    assert session.metadata is not None
    assert session.metadata.to_dict() == {"paykube_namespace": "shop", "paykube_name": "order-1"}
    assert session.client_reference_id == "3f1c7a52-uid"
    assert session.customer_email == "buyer@example.com"
    assert session.payment_intent is None
    assert session.livemode is False
    response = session.last_response
    assert response is not None
    assert (response.request_id or "").startswith("req_")
    assert stripe_control.sessions_created() == 1


def test_retrieve_list_and_line_items(stripe_client: stripe.StripeClient) -> None:
    first = stripe_client.v1.checkout.sessions.create(session_params())
    second = stripe_client.v1.checkout.sessions.create(session_params(client_reference_id="b"))
    fetched = stripe_client.v1.checkout.sessions.retrieve(first.id)
    assert fetched.to_dict() == first.to_dict()
    listed = stripe_client.v1.checkout.sessions.list({"limit": 1})
    assert [s.id for s in listed.data] == [second.id]
    assert listed.has_more
    rest = stripe_client.v1.checkout.sessions.list({"starting_after": second.id})
    assert [s.id for s in rest.data] == [first.id]
    assert not rest.has_more
    items = stripe_client.v1.checkout.sessions.line_items.list(first.id)
    assert [(i.description, i.quantity, i.amount_total) for i in items.data] == [
        ("Annual plan", 2, 2500),
    ]


@pytest.mark.parametrize(
    ("actions", "intent_status", "amount_received"),
    [
        (["paid"], "succeeded", 2500),
        (["async_pending"], "processing", 0),
        (["async_pending", "async_succeeded"], "succeeded", 2500),
        (["async_pending", "async_failed"], "requires_payment_method", 0),
    ],
)
def test_retrieve_expands_the_payment_intent(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
    actions: list[Action], intent_status: str, amount_received: int,
) -> None:
    session = stripe_client.v1.checkout.sessions.create(session_params())
    unexpanded = stripe_client.v1.checkout.sessions.retrieve(session.id,
                                                              {"expand": ["payment_intent"]})
    assert unexpanded.payment_intent is None  # an open session has no intent yet
    for action in actions:
        stripe_control.transition(session.id, action)
    plain = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert isinstance(plain.payment_intent, str) and plain.payment_intent.startswith("pi_")
    expanded = stripe_client.v1.checkout.sessions.retrieve(session.id,
                                                            {"expand": ["payment_intent"]})
    intent = expanded.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.id, intent.status) == (plain.payment_intent, intent_status)
    assert (intent.amount, intent.amount_received, intent.currency) == (
        2500, amount_received, "usd")
    assert (intent.last_payment_error is not None) == (intent_status == "requires_payment_method")
    direct = stripe_client.v1.payment_intents.retrieve(intent.id)
    assert direct.status == intent_status


def test_expanding_an_unknown_field_is_refused(stripe_client: stripe.StripeClient) -> None:
    session = stripe_client.v1.checkout.sessions.create(session_params())
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.retrieve(session.id, {"expand": ["customer"]})
    assert error_of(caught.value)["param"] == "expand"


def test_idempotent_replay_returns_the_same_session(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    params = session_params()
    options: stripe.RequestOptions = {"idempotency_key": "paykube:uid-1:create"}
    first = stripe_client.v1.checkout.sessions.create(params, options)
    again = stripe_client.v1.checkout.sessions.create(params, options)
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert stripe_control.sessions_created() == 1
    assert stripe_control.stats()["create_requests"] == 2


def test_same_key_with_other_params_is_an_idempotency_error(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "paykube:uid-2:create"}
    stripe_client.v1.checkout.sessions.create(session_params(), options)
    with pytest.raises(stripe.IdempotencyError) as caught:
        stripe_client.v1.checkout.sessions.create(
            session_params(client_reference_id="other"), options,
        )
    assert caught.value.http_status == 400
    assert caught.value.user_message == (
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with. Try using a key other than 'paykube:uid-2:create' if you meant to "
        "execute a different request."
    )
    assert stripe_control.sessions_created() == 1


def test_same_key_on_another_endpoint_is_an_idempotency_error(
    stripe_client: stripe.StripeClient,
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "shared-key"}
    session = stripe_client.v1.checkout.sessions.create(session_params(), options)
    with pytest.raises(stripe.IdempotencyError, match="same endpoint"):
        stripe_client.v1.checkout.sessions.expire(session.id, options=options)


def test_unknown_session_is_a_404_invalid_request(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.retrieve("cs_test_missing")
    error = caught.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "session")
    assert error.user_message == "No such checkout.session: 'cs_test_missing'"
    assert error_of(error)["doc_url"].endswith("/error-codes/resource-missing")


def test_sessions_are_visible_only_to_their_api_key(
    stripe_emulator: EmulatorThread, stripe_client: stripe.StripeClient,
) -> None:
    session = stripe_client.v1.checkout.sessions.create(session_params())
    other = client_for(stripe_emulator, "sk_test_another_account_key")
    with pytest.raises(stripe.InvalidRequestError):
        other.v1.checkout.sessions.retrieve(session.id)
    assert other.v1.checkout.sessions.list().data == []


@pytest.mark.parametrize("key", ["pk_test_publishable_key", "sk_test_revoked_key_1"])
def test_bad_api_keys_are_authentication_errors(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl, key: str,
) -> None:
    stripe_control.revoke_key("sk_test_revoked_key_1")
    with pytest.raises(stripe.AuthenticationError) as caught:
        client_for(stripe_emulator, key).v1.checkout.sessions.create(session_params())
    assert caught.value.http_status == 401
    assert "API Key provided: " in (caught.value.user_message or "")
    assert key not in str(caught.value.json_body), "the key is quoted masked, never in full"
    assert stripe_control.sessions_created() == 0


def test_missing_api_key_is_a_stripe_shaped_401(stripe_emulator: EmulatorThread) -> None:
    response = httpx.post(f"{stripe_emulator.base_url}/v1/checkout/sessions", data={})
    assert response.status_code == 401
    assert response.headers["Request-Id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("You did not provide an API key.")


@pytest.mark.parametrize(
    ("overrides", "code", "param"),
    [
        ({"success_url": None}, "parameter_missing", "success_url"),
        ({"success_url": "not a url"}, "url_invalid", "success_url"),
        ({"line_items": None}, "parameter_missing", "line_items"),
        ({"expires_at": int(time.time()) + 600}, "parameter_invalid_integer", "expires_at"),
        ({"expires_at": int(time.time()) + 25 * 3600}, "parameter_invalid_integer", "expires_at"),
        ({"customer_email": "nobody"}, "email_invalid", "customer_email"),
        ({"client_reference_id": "x" * 201}, None, "client_reference_id"),
        ({"surprise": "1"}, "parameter_unknown", "surprise"),
        (
            {"line_items": [{"price_data": {
                "currency": "usx", "unit_amount": 100, "product_data": {"name": "n"},
            }, "quantity": 1}]},
            None, "line_items[0][price_data][currency]",
        ),
        (
            {"line_items": [{"price_data": {
                "currency": "usd", "unit_amount": 10, "product_data": {"name": "n"},
            }, "quantity": 1}]},
            "amount_too_small", "line_items",
        ),
        (
            {"line_items": [{"price_data": {
                "currency": "eur", "unit_amount": 100, "product_data": {"name": "n"},
            }}]},
            "parameter_missing", "line_items[0][quantity]",
        ),
    ],
)
def test_invalid_parameters_are_refused_like_stripe(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
    overrides: dict[str, Any], code: str | None, param: str,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.create(session_params(**overrides))
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (400, code, param)
    assert stripe_control.sessions_created() == 0


def test_validation_errors_are_not_saved_for_replay(stripe_client: stripe.StripeClient) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "fix-and-retry"}
    too_soon = session_params(expires_at=int(time.time()) + 60)
    with pytest.raises(stripe.InvalidRequestError, match="at least 30 minutes"):
        stripe_client.v1.checkout.sessions.create(too_soon, options)
    session = stripe_client.v1.checkout.sessions.create(session_params(), options)
    assert session.status == "open"


def test_expire_through_the_api(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    session = stripe_client.v1.checkout.sessions.create(session_params())
    expired = stripe_client.v1.checkout.sessions.expire(
        session.id, options={"idempotency_key": "paykube:uid:expire"},
    )
    assert (expired.status, expired.payment_status, expired.url) == ("expired", "unpaid", None)
    replay = stripe_client.v1.checkout.sessions.expire(
        session.id, options={"idempotency_key": "paykube:uid:expire"},
    )
    assert replay.status == "expired"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.expire(session.id)
    assert caught.value.user_message == (
        'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
        "Session has a status of `expired`."
    )
    (event,) = stripe_control.events(session_id=session.id)
    assert event["type"] == "checkout.session.expired"
    assert event["request"]["idempotency_key"] == "paykube:uid:expire"
    assert event["request"]["id"].startswith("req_")
    assert event["data"]["object"]["status"] == "expired"


def test_every_response_carries_a_request_id(
    stripe_emulator: EmulatorThread, stripe_api_key: str,
) -> None:
    auth = {"Authorization": f"Bearer {stripe_api_key}"}
    base = stripe_emulator.base_url
    responses = [
        httpx.get(f"{base}/v1/checkout/sessions", headers=auth),
        httpx.get(f"{base}/v1/checkout/sessions/cs_test_nope", headers=auth),
        httpx.get(f"{base}/v1/nothing_here", headers=auth),
        httpx.get(f"{base}/v1/checkout/sessions"),
        httpx.get(f"{base}/_emulator/health"),
        httpx.get(f"{base}/_emulator/nothing_here"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 404, 401, 200, 404]
    assert all(r.headers["Request-Id"].startswith("req_") for r in responses)
    assert "Unrecognized request URL (GET: /v1/nothing_here)" in responses[2].text


# --- faults -----------------------------------------------------------------------------


def test_rate_limit_fault_raises_rate_limit_error(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    stripe_control.add_fault(
        "rate_limit", count=1, method="POST", path="/v1/checkout/sessions", retry_after=2,
    )
    with pytest.raises(stripe.RateLimitError) as caught:
        stripe_client.v1.checkout.sessions.create(session_params())
    assert caught.value.http_status == 429
    assert error_of(caught.value)["code"] == "rate_limit"
    headers = caught.value.headers or {}
    assert headers["Retry-After"] == "2"
    assert headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert stripe_control.sessions_created() == 0
    assert stripe_control.faults() == []
    stripe_client.v1.checkout.sessions.create(session_params())
    assert stripe_control.sessions_created() == 1


def test_api_error_fault_and_sdk_retry_make_exactly_one_session(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl, stripe_api_key: str,
) -> None:
    stripe_control.add_fault("api_error", count=1, method="POST")
    with pytest.raises(stripe.APIError) as caught:
        client_for(stripe_emulator, stripe_api_key).v1.checkout.sessions.create(session_params())
    assert caught.value.http_status == 500
    stripe_control.add_fault("api_error", count=1, method="POST")
    retrying = client_for(stripe_emulator, stripe_api_key, retries=2)
    session = retrying.v1.checkout.sessions.create(session_params())
    assert session.status == "open"
    assert stripe_control.sessions_created() == 1
    creates = stripe_control.requests(path="/v1/checkout/sessions")
    assert [r["status"] for r in creates] == [500, 500, 200]
    assert creates[1]["idempotency_key"] == creates[2]["idempotency_key"]


def test_latency_fault_delays_the_answer(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    stripe_control.add_fault("latency", count=1, seconds=0.4)
    started = time.monotonic()
    stripe_client.v1.checkout.sessions.list()
    assert time.monotonic() - started >= 0.4


def test_hold_keeps_the_answer_after_the_session_exists(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    stripe_control.add_fault("hold", method="POST", path="/v1/checkout/sessions")
    options: stripe.RequestOptions = {"idempotency_key": "paykube:held:create"}
    params = session_params()  # once: a replay must carry the very same parameters
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(stripe_client.v1.checkout.sessions.create, params, options)
        (held,) = stripe_control.wait_for_held(1)
        assert not pending.done()
        assert stripe_control.sessions_created() == 1
        # A second process retrying with the same key gets the session at once.
        replay = stripe_client.v1.checkout.sessions.create(params, options)
        assert replay.id == held["object_id"]
        assert stripe_control.release() == 1
        session = pending.result(timeout=10)
    assert session.id == held["object_id"]
    assert stripe_control.sessions_created() == 1


def test_dropped_answer_and_sdk_retry_replay_the_session(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl, stripe_api_key: str,
) -> None:
    stripe_control.add_fault("drop", method="POST", path="/v1/checkout/sessions")
    with pytest.raises(stripe.APIConnectionError):
        client_for(stripe_emulator, stripe_api_key).v1.checkout.sessions.create(
            session_params(), options={"idempotency_key": "lost-answer"},
        )
    assert stripe_control.sessions_created() == 1
    stripe_control.add_fault("drop", method="POST", path="/v1/checkout/sessions")
    retrying = client_for(stripe_emulator, stripe_api_key, retries=1)
    session = retrying.v1.checkout.sessions.create(session_params(client_reference_id="b"))
    assert session.last_response is not None
    assert session.last_response.headers["Idempotent-Replayed"] == "true"
    assert stripe_control.sessions_created() == 2


def test_configured_rate_limit_answers_429(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    stripe_control.set_rate_limit(3)
    outcomes = []
    for _ in range(6):
        try:
            stripe_client.v1.checkout.sessions.list()
            outcomes.append("ok")
        except stripe.RateLimitError:
            outcomes.append("429")
    assert outcomes.count("ok") == 3
    assert outcomes.count("429") == 3
    stripe_control.set_rate_limit(None)
    stripe_client.v1.checkout.sessions.list()


def test_sessions_expire_by_themselves_at_expires_at(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
) -> None:
    soon = stripe_client.v1.checkout.sessions.create(
        session_params(expires_at=int(time.time()) + 1900),
    )
    later = stripe_client.v1.checkout.sessions.create(session_params())
    moved = stripe_control.advance_clock(2000)
    assert moved["expired"] == [soon.id]
    assert stripe_client.v1.checkout.sessions.retrieve(soon.id).status == "expired"
    assert stripe_client.v1.checkout.sessions.retrieve(later.id).status == "open"
    (event,) = stripe_control.events(type="checkout.session.expired")
    assert event["request"] == {"id": None, "idempotency_key": None}


# --- running it as a process --------------------------------------------------------------


def test_module_entry_point_serves_and_prints_its_url(tmp_path: Path) -> None:
    log = tmp_path / "stripe-emulator.log"
    with EmulatorProcess(
        log, webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET,
    ) as process, EmulatorControl(process.base_url) as control:
        assert control.health()["ok"] is True
        (endpoint,) = control.webhook_endpoints()
        assert endpoint["url"] == "http://127.0.0.1:9/hook"
        client = stripe.StripeClient(
            "sk_test_process", base_addresses={"api": process.base_url}, max_network_retries=0,
        )
        session = client.v1.checkout.sessions.create(session_params())
        result = control.pay(session.id)
        assert result["deliveries"][0]["error"], "nothing listens on port 9"
    assert process.base_url in log.read_text().splitlines()


# --- signing -------------------------------------------------------------------------------


def test_sign_payload_is_what_the_stripe_sdk_verifies() -> None:
    payload = b'{\n  "id": "evt_1",\n  "object": "event"\n}'
    now = int(time.time())
    header = sign_payload(payload, SECRET, now)
    assert header.startswith(f"t={now},v1=")
    assert stripe.WebhookSignature.verify_header(payload.decode(), header, SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_other", 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            payload.decode(), sign_payload(payload, SECRET, now - 600), SECRET, 300,
        )


# --- webhooks, in the test's loop ---------------------------------------------------------


class Receiver:
    """A webhook endpoint that records raw bodies and headers; answers `statuses` in turn."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.statuses: list[int] = []
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls.append((await request.read(), dict(request.headers)))
        self._arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200, text="ok")

    async def wait_for(self, count: int) -> None:
        while len(self.calls) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/stripe", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/webhooks/stripe"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self, secret: str = SECRET) -> list[stripe.Event]:
        return [
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
            for body, headers in self.calls
        ]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


@pytest_asyncio.fixture
async def hooked(
    async_stripe_control: AsyncEmulatorControl, receiver: Receiver,
) -> AsyncEmulatorControl:
    await async_stripe_control.add_webhook_endpoint(receiver.url, SECRET)
    return async_stripe_control


def async_client(emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_async_tests", base_addresses={"api": emulator.base_url}, max_network_retries=0,
    )


async def test_webhooks_are_signed_so_the_stripe_sdk_accepts_them(
    async_stripe_emulator: StripeEmulator, hooked: AsyncEmulatorControl, receiver: Receiver,
) -> None:
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    result = await hooked.transition(session.id, "paid")
    assert [d["status"] for d in result["deliveries"]] == [200]
    ((body, headers),) = receiver.calls
    assert headers["Content-Type"].startswith("application/json")
    assert headers["User-Agent"].startswith("Stripe/1.0")
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], SECRET)
    assert event.id == result["event"]["id"]
    assert event.id.startswith("evt_")
    assert event.type == "checkout.session.completed"
    assert event.data.object["id"] == session.id
    assert json.loads(body)["object"] == "event"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            body.replace(b'"paid"', b'"unpaid"'), headers["Stripe-Signature"], SECRET,
        )


@pytest.mark.parametrize(
    ("actions", "event_types", "status", "payment_status"),
    [
        (["paid"], ["checkout.session.completed"], "complete", "paid"),
        (["async_pending"], ["checkout.session.completed"], "complete", "unpaid"),
        (
            ["async_pending", "async_succeeded"],
            ["checkout.session.completed", "checkout.session.async_payment_succeeded"],
            "complete", "paid",
        ),
        (
            ["async_pending", "async_failed"],
            ["checkout.session.completed", "checkout.session.async_payment_failed"],
            "complete", "unpaid",
        ),
        (["expire"], ["checkout.session.expired"], "expired", "unpaid"),
    ],
)
async def test_each_transition_sends_its_event(
    async_stripe_emulator: StripeEmulator, hooked: AsyncEmulatorControl, receiver: Receiver,
    actions: list[Any], event_types: list[str], status: str, payment_status: str,
) -> None:
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    for action in actions:
        await hooked.transition(session.id, action)
    events = receiver.events()
    assert [e.type for e in events] == event_types
    last = events[-1]
    snapshot = last.data.object
    assert (snapshot["status"], snapshot["payment_status"]) == (status, payment_status)
    assert last.api_version == async_stripe_emulator.state.api_version
    assert last.livemode is False
    assert last.request is not None
    assert last.request.id is None
    assert last.pending_webhooks == 1
    current = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (current.status, current.payment_status) == (status, payment_status)
    if status == "complete":
        assert isinstance(current.payment_intent, str)
        assert current.payment_intent.startswith("pi_")
        assert current.customer_details is not None
        assert current.customer_details.email == "buyer@example.com"
    else:
        assert current.payment_intent is None
        assert current.url is None
    assert [e["type"] for e in await hooked.events(session_id=session.id)] == event_types


async def test_impossible_transitions_are_refused(
    async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    await async_stripe_control.transition(session.id, "paid")
    for action in ("expire", "paid", "async_succeeded", "async_failed"):
        with pytest.raises(EmulatorControlError) as caught:
            await async_stripe_control.transition(session.id, action)
        assert caught.value.status == 409
    assert len(await async_stripe_control.events(session_id=session.id)) == 1


async def test_redelivery_with_stale_timestamp_or_wrong_secret_is_rejected_by_the_sdk(
    async_stripe_emulator: StripeEmulator, hooked: AsyncEmulatorControl, receiver: Receiver,
) -> None:
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    event = (await hooked.transition(session.id, "paid"))["event"]
    await hooked.deliver(event["id"], timestamp=int(time.time()) - 3600)
    await hooked.deliver(event["id"], secret="whsec_not_the_endpoints")
    await hooked.deliver(event["id"])
    assert len(receiver.calls) == 4
    _, stale, wrong, fresh = receiver.calls
    assert {json.loads(body)["id"] for body, _ in receiver.calls} == {event["id"]}
    stripe.Webhook.construct_event(fresh[0], fresh[1]["Stripe-Signature"], SECRET)
    for body, headers in (stale, wrong):
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], SECRET)
    attempts = [d["attempt"] for d in await hooked.deliveries(event["id"])]
    assert attempts == [1, 2, 3, 4]


async def test_rolled_secret_signs_with_both_secrets(
    async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
    receiver: Receiver,
) -> None:
    await async_stripe_control.add_webhook_endpoint(
        receiver.url, secrets=["whsec_new_secret", SECRET],
    )
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    await async_stripe_control.transition(session.id, "expire")
    ((body, headers),) = receiver.calls
    assert headers["Stripe-Signature"].count("v1=") == 2
    for secret in ("whsec_new_secret", SECRET):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)


async def test_failed_delivery_is_recorded_and_retried(
    async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
    receiver: Receiver,
) -> None:
    await async_stripe_control.add_webhook_endpoint(receiver.url, SECRET, retry_delays=[0.1])
    receiver.statuses = [503]
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    result = await async_stripe_control.transition(session.id, "paid")
    assert [d["status"] for d in result["deliveries"]] == [503]
    async with asyncio.timeout(5):
        await receiver.wait_for(2)
    deliveries = await async_stripe_control.deliveries(result["event"]["id"])
    assert [(d["attempt"], d["status"], d["ok"]) for d in deliveries] == [
        (1, 503, False), (2, 200, True),
    ]
    first, second = receiver.events()
    assert (first.pending_webhooks, second.pending_webhooks) == (1, 1)
    assert async_stripe_emulator.state.events[first.id].pending == set()


async def test_api_expire_delivers_its_event_in_the_background(
    async_stripe_emulator: StripeEmulator, hooked: AsyncEmulatorControl, receiver: Receiver,
) -> None:
    client = async_client(async_stripe_emulator)
    session = await client.v1.checkout.sessions.create_async(session_params())
    await client.v1.checkout.sessions.expire_async(
        session.id, options={"idempotency_key": "paykube:uid:expire"},
    )
    async with asyncio.timeout(5):
        await receiver.wait_for(1)
    (event,) = receiver.events()
    assert event.type == "checkout.session.expired"
    assert event.request is not None
    assert event.request.idempotency_key == "paykube:uid:expire"
    assert (event.request.id or "").startswith("req_")


async def test_in_loop_helper_and_hosted_checkout_page(receiver: Receiver) -> None:
    from paykube_dev.stripe_emulator import EmulatorConfig

    config = EmulatorConfig(hosted_checkout=True)
    async with StripeEmulator(
        config, webhook_url=receiver.url, webhook_secret=SECRET,
    ) as emulator, httpx.AsyncClient(follow_redirects=False) as http:
        client = async_client(emulator)
        session = await client.v1.checkout.sessions.create_async(session_params())
        assert session.url == f"{emulator.base_url}/c/pay/{session.id}"
        page = await http.get(session.url)
        assert page.status_code == 200
        assert "$25.00 USD" in page.text
        paid = await http.post(f"{session.url}/paid")
        assert paid.status_code == 303
        assert paid.headers["Location"] == f"https://shop.example/ok?session={session.id}"
        async with asyncio.timeout(5):
            await receiver.wait_for(1)
        assert [e.type for e in receiver.events()] == ["checkout.session.completed"]
        second = await client.v1.checkout.sessions.create_async(session_params())
        event, deliveries = await emulator.transition(second.id, "async_pending")
        assert event.type == "checkout.session.completed"
        assert [d.status for d in deliveries] == [200]


# --- accounts, keys and Connect ----------------------------------------------------------


def test_each_key_has_an_account_whose_id_derives_from_the_key(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl,
    stripe_client: stripe.StripeClient, stripe_api_key: str,
) -> None:
    expected = account_id_for_key(stripe_api_key)
    assert re.fullmatch(r"acct_[A-Za-z0-9]{16}", expected)
    account = stripe_client.v1.accounts.retrieve_current()
    assert (account.id, account.object) == (expected, "account")
    assert "livemode" not in account, "Stripe's account object has no livemode"
    assert stripe_control.account_for_key(stripe_api_key)["id"] == expected
    other = client_for(stripe_emulator, "sk_test_" + "b" * 24).v1.accounts.retrieve_current()
    assert other.id != expected
    session = stripe_client.v1.checkout.sessions.create(session_params())
    (record,) = stripe_control.requests("/v1/checkout/sessions")
    assert (record["account_id"], record["key_account_id"]) == (expected, expected)
    assert record["livemode"] is False
    assert stripe_control.events(account_id=expected) == []
    stripe_control.pay(session.id)
    assert [e["type"] for e in stripe_control.events(account_id=expected)] == [
        "checkout.session.completed"]


def test_a_live_key_makes_live_sessions_and_events_invisible_to_test_keys(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl,
) -> None:
    live_key, test_key = "sk_live_" + "l" * 24, "sk_test_" + "t" * 24
    account = stripe_control.create_account(keys=[live_key, test_key])
    live = client_for(stripe_emulator, live_key)
    test = client_for(stripe_emulator, test_key)
    session = live.v1.checkout.sessions.create(session_params())
    assert session.id.startswith("cs_live_") and session.livemode is True
    result = stripe_control.pay(session.id)
    assert result["event"]["livemode"] is True
    assert live.v1.events.list().data[0].livemode is True
    with pytest.raises(stripe.InvalidRequestError):
        test.v1.checkout.sessions.retrieve(session.id)
    assert test.v1.checkout.sessions.list().data == []
    assert test.v1.events.list().data == []
    assert test.v1.accounts.retrieve_current().id == account["id"]
    assert live.v1.accounts.retrieve_current().id == account["id"]
    assert (live.v1.balance.retrieve().livemode, test.v1.balance.retrieve().livemode) == (
        True, False), "the balance tells a key's mode"


def test_two_keys_of_one_account_act_on_it_until_one_is_revoked(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl,
) -> None:
    old, new = "sk_test_rotationOld0001", "rk_test_rotationNew0002"
    created = stripe_control.create_account(account_id="acct_TenantA000000001", keys=[old])
    assert created["keys"] == ["sk_test_****0001"], "keys are shown masked"
    stripe_control.add_key("acct_TenantA000000001", new)
    session = client_for(stripe_emulator, old).v1.checkout.sessions.create(session_params())
    rotated = client_for(stripe_emulator, new)
    assert rotated.v1.checkout.sessions.retrieve(session.id).id == session.id
    stripe_control.revoke_key(old)
    with pytest.raises(stripe.AuthenticationError) as caught:
        client_for(stripe_emulator, old).v1.checkout.sessions.retrieve(session.id)
    assert error_of(caught.value)["code"] == "api_key_expired"
    assert rotated.v1.accounts.retrieve_current().id == "acct_TenantA000000001"
    with pytest.raises(EmulatorControlError) as taken:
        stripe_control.create_account(keys=[new])
    assert taken.value.status == 409
    with pytest.raises(EmulatorControlError):
        stripe_control.create_account(account_id="acct_bad-id", keys=["sk_test_x_123456"])
    assert {a["id"] for a in stripe_control.accounts()} == {"acct_TenantA000000001"}


def test_stripe_account_header_acts_on_a_connected_account_only(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl,
) -> None:
    platform_key, outsider_key = "sk_test_platformKey0001", "sk_test_outsiderKey0002"
    platform = stripe_control.create_account(account_id="acct_Platform00000001",
                                             keys=[platform_key])
    stripe_control.create_account(account_id="acct_Connected0000001",
                                  platform=platform["id"])
    stripe_control.create_account(account_id="acct_Stranger00000001",
                                  keys=["sk_test_strangerKey0003"])
    client = client_for(stripe_emulator, platform_key)
    on_behalf: stripe.RequestOptions = {"stripe_account": "acct_Connected0000001"}
    session = client.v1.checkout.sessions.create(session_params(), on_behalf)
    assert session.last_response is not None
    assert session.last_response.headers["Stripe-Account"] == "acct_Connected0000001"
    assert client.v1.accounts.retrieve_current(options=on_behalf).id == "acct_Connected0000001"
    assert client.v1.checkout.sessions.retrieve(session.id, options=on_behalf).id == session.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.retrieve(session.id)  # not the platform's own session
    assert client.v1.accounts.retrieve("acct_Connected0000001").id == "acct_Connected0000001"

    with pytest.raises(stripe.PermissionError) as foreign:
        client.v1.checkout.sessions.create(
            session_params(), {"stripe_account": "acct_Stranger00000001"})
    error = error_of(foreign.value)
    assert (foreign.value.http_status, error["code"]) == (403, "account_invalid")
    assert error["message"] == (
        "The provided key 'sk_test_****0001' does not have access to account "
        "'acct_Stranger00000001' (or that account does not exist). Application access may "
        "have been revoked.")
    with pytest.raises(stripe.PermissionError, match="Only Stripe Connect platforms"):
        client_for(stripe_emulator, outsider_key).v1.checkout.sessions.list(
            options={"stripe_account": "acct_Connected0000001"})

    connected = stripe_control.requests(account_id="acct_Connected0000001")
    assert {r["key_account_id"] for r in connected} == {"acct_Platform00000001"}
    assert all(r["stripe_account"] == "acct_Connected0000001" for r in connected)
    refused = stripe_control.requests(key_account_id="acct_Platform00000001", method="POST")
    assert [(r["status"], r["account_id"]) for r in refused] == [
        (200, "acct_Connected0000001"), (403, None)]
    assert stripe_control.stats()["sessions_created"] == 1


def test_request_log_keeps_the_raw_path_and_the_headers(
    stripe_emulator: EmulatorThread, stripe_control: EmulatorControl, stripe_api_key: str,
) -> None:
    headers = {"Authorization": f"Bearer {stripe_api_key}", "Stripe-Version": "2024-06-20",
               "Idempotency-Key": "raw-1"}
    base = stripe_emulator.base_url
    escaped = httpx.post(f"{base}/v1/checkout/sessions/..%2F..%2Frefunds%3Fx%3D/expire",
                         headers=headers)
    assert escaped.status_code == 404
    (record,) = stripe_control.requests(account_id=account_id_for_key(stripe_api_key))
    assert record["raw_path"] == "/v1/checkout/sessions/..%2F..%2Frefunds%3Fx%3D/expire"
    assert record["path"] == "/v1/checkout/sessions/../../refunds?x=/expire"
    assert (record["method"], record["stripe_version"], record["idempotency_key"]) == (
        "POST", "2024-06-20", "raw-1")
    assert record["stripe_account"] is None


# --- /v1/webhook_endpoints ----------------------------------------------------------------


def test_webhook_endpoints_create_list_update_delete_through_the_sdk(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl, stripe_api_key: str,
) -> None:
    endpoints = stripe_client.v1.webhook_endpoints
    created = endpoints.create({
        "url": "https://hooks.example/stripe", "api_version": "2024-06-20",
        "enabled_events": ["checkout.session.completed", "checkout.session.expired"],
        "description": "paykube", "metadata": {"paykube_provider": "shop/main"},
    })
    assert created.id.startswith("we_") and created.object == "webhook_endpoint"
    assert re.fullmatch(r"whsec_[A-Za-z0-9]{32}", created.secret or "")
    assert (created.status, created.livemode, created.api_version) == (
        "enabled", False, "2024-06-20")
    assert created.metadata.to_dict() == {"paykube_provider": "shop/main"}
    second = endpoints.create({"url": "https://hooks.example/two", "enabled_events": ["*"]})
    assert second.secret != created.secret
    fetched = endpoints.retrieve(created.id)
    assert "secret" not in fetched.to_dict(), "the secret comes only with the create answer"
    assert fetched.enabled_events == created.enabled_events
    page = endpoints.list({"limit": 1})
    assert ([e.id for e in page.data], page.has_more) == ([second.id], True)
    rest = endpoints.list({"starting_after": second.id})
    assert [e.id for e in rest.data] == [created.id]
    updated = endpoints.update(created.id, {"disabled": True, "enabled_events": ["*"]})
    assert (updated.status, updated.enabled_events) == ("disabled", ["*"])
    deleted = endpoints.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "webhook_endpoint", True)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        endpoints.retrieve(created.id)
    assert caught.value.user_message == f"No such webhook_endpoint: '{created.id}'"
    (left,) = stripe_control.webhook_endpoints(account_id=account_id_for_key(stripe_api_key))
    assert (left["id"], left["via_api"]) == (second.id, True)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": "https://hooks.example/x"}, "enabled_events"),
        ({"url": "ftp://hooks.example/x", "enabled_events": ["*"]}, "url"),
        ({"url": "https://hooks.example/x", "enabled_events": ["Not An Event"]},
         "enabled_events[0]"),
        ({"url": "https://hooks.example/x", "enabled_events": ["*"], "api_version": "latest"},
         "api_version"),
    ],
)
def test_invalid_webhook_endpoints_are_refused(
    stripe_client: stripe.StripeClient, stripe_control: EmulatorControl,
    params: dict[str, Any], param: str,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.webhook_endpoints.create(cast(Any, params))
    assert (caught.value.http_status, caught.value.param) == (400, param)
    assert stripe_control.webhook_endpoints() == []


def test_endpoints_of_one_account_are_invisible_to_another(
    stripe_emulator: EmulatorThread, stripe_client: stripe.StripeClient,
) -> None:
    created = stripe_client.v1.webhook_endpoints.create(
        {"url": "https://hooks.example/a", "enabled_events": ["*"]})
    other = client_for(stripe_emulator, "sk_test_other_tenant_key")
    assert other.v1.webhook_endpoints.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        other.v1.webhook_endpoints.delete(created.id)
    assert stripe_client.v1.webhook_endpoints.retrieve(created.id).id == created.id


async def started_receivers(count: int) -> list[Receiver]:
    receivers = [Receiver() for _ in range(count)]
    for rec in receivers:
        await rec.start()
    return receivers


async def test_each_event_goes_to_each_matching_endpoint_signed_with_its_own_secret(
    async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    control, base = async_stripe_control, async_stripe_emulator.base_url
    own, pinned, filtered, disabled, connect, other = await started_receivers(6)
    try:
        platform = await control.create_account(account_id="acct_Platform00000002",
                                                keys=["sk_test_platform_key_21"])
        await control.create_account(account_id="acct_Connected0000002",
                                     platform=platform["id"])
        client = stripe.StripeClient("sk_test_platform_key_21", base_addresses={"api": base},
                                     max_network_retries=0)
        other_client = stripe.StripeClient("sk_test_other_key_22",
                                           base_addresses={"api": base}, max_network_retries=0)
        hooks = client.v1.webhook_endpoints
        made = {
            "own": await hooks.create_async({"url": own.url, "enabled_events": ["*"]}),
            "pinned": await hooks.create_async({"url": pinned.url, "enabled_events": ["*"],
                                                "api_version": "2024-06-20"}),
            "filtered": await hooks.create_async({"url": filtered.url,
                                                  "enabled_events": ["checkout.session.expired"]}),
            "disabled": await hooks.create_async({"url": disabled.url, "enabled_events": ["*"]}),
            "connect": await hooks.create_async({"url": connect.url, "enabled_events": ["*"],
                                                 "connect": True}),
            "other": await other_client.v1.webhook_endpoints.create_async(
                {"url": other.url, "enabled_events": ["*"]}),
        }
        await hooks.update_async(made["disabled"].id, {"disabled": True})
        mine = await client.v1.checkout.sessions.create_async(session_params())
        theirs = await client.v1.checkout.sessions.create_async(
            session_params(), {"stripe_account": "acct_Connected0000002"})
        paid = await control.transition(mine.id, "paid")
        await control.transition(theirs.id, "paid")

        def verified(rec: Receiver, name: str) -> list[dict[str, Any]]:
            """The bodies `rec` got, each checked by the SDK against `name`'s secret."""
            secret = made[name].secret
            assert secret is not None
            for body, headers in rec.calls:
                stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
            return [json.loads(body) for body, _ in rec.calls]

        (event,) = verified(own, "own")
        assert event["id"] == paid["event"]["id"] and "account" not in event
        assert event["api_version"] == async_stripe_emulator.state.api_version
        assert [e["api_version"] for e in verified(pinned, "pinned")] == ["2024-06-20"]
        assert (filtered.calls, disabled.calls, other.calls) == ([], [], [])
        (connected,) = verified(connect, "connect")
        assert connected["account"] == "acct_Connected0000002"
        assert connected["data"]["object"]["id"] == theirs.id
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(own.calls[0][0], own.calls[0][1]["Stripe-Signature"],
                                           made["pinned"].secret or "")
        deliveries = await control.deliveries(paid["event"]["id"])
        assert {(d["endpoint"], d["api_version"]) for d in deliveries} == {
            (made["own"].id, async_stripe_emulator.state.api_version),
            (made["pinned"].id, "2024-06-20"),
        }
    finally:
        for rec in (own, pinned, filtered, disabled, connect, other):
            await rec.stop()


def test_new_resources_match_stripe_mocks_request_and_answer_shapes(
    stripe_mock: StripeMock, stripe_client: stripe.StripeClient,
) -> None:
    """stripe-mock validates each request against Stripe's OpenAPI spec and answers with its
    fixtures: the same SDK calls must pass there, and the emulator's objects must carry only
    fields Stripe's objects have (the webhook endpoint: exactly those)."""
    mock = stripe.StripeClient(stripe_mock.api_key, base_addresses={"api": stripe_mock.url},
                               max_network_retries=0)
    params: dict[str, Any] = {
        "url": "https://hooks.example/stripe", "enabled_events": ["checkout.session.completed"],
        "api_version": "2024-06-20", "connect": True, "description": "paykube",
        "metadata": {"k": "v"},
    }
    answers: dict[str, list[dict[str, Any]]] = {}
    for name, client in (("mock", mock), ("emulator", stripe_client)):
        hooks = client.v1.webhook_endpoints
        endpoint = hooks.create(cast(Any, params))
        answers[name] = [
            endpoint.to_dict(), hooks.list({"limit": 3}).to_dict(),
            hooks.update(endpoint.id, {"disabled": True, "enabled_events": ["*"]}).to_dict(),
            hooks.delete(endpoint.id).to_dict(),
            client.v1.accounts.retrieve_current().to_dict(),
            client.v1.balance.retrieve().to_dict(),
        ]
    mock_created, mock_list, mock_updated, mock_deleted, mock_account, mock_balance = (
        answers["mock"])
    created, listed, updated, deleted, account, balance = answers["emulator"]
    # stripe-mock's fixture leaves out `secret`, which Stripe sends only in this answer.
    assert set(created) == set(mock_created) | {"secret"}
    assert set(updated) == set(mock_updated)
    assert set(listed) == set(mock_list)
    assert set(deleted) == set(mock_deleted)
    assert set(account) <= set(mock_account)
    assert set(account["business_profile"]) <= set(mock_account["business_profile"])
    assert set(account["settings"]) <= set(mock_account["settings"])
    assert set(balance) <= set(mock_balance)
