"""The operator's Stripe adapter against stripe-mock (request shapes, Stripe's own OpenAPI
validation) and against the stateful emulator (idempotency, retries, faults)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx
import pytest

from paykube.api.providers import DEFAULT_STRIPE_API_VERSION
from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, ProviderError
from paykube.providers.base import AccountCredentials, CreateSession, ProviderSession
from paykube.providers.ratelimit import Priority, RateLimiter
from paykube.providers.stripe import StripeProvider
from paykube.settings import SecretStr
from paykube_dev.proc import free_port
from paykube_dev.services import StripeMock
from paykube_dev.stripe_emulator import AsyncEmulatorControl, EmulatorControl, StripeEmulator
from paykube_dev.stripe_emulator.state import Action

KEY = SecretStr("sk_test_adapter")
FULL_SPEC: dict[str, object] = {
    "amount": 5497, "currency": "eur", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "customerEmail": "jane@example.com",
    "lineItems": [{"name": "Shirt", "unitAmount": 1999, "quantity": 2},
                  {"name": "Stickers", "unitAmount": 1499, "quantity": 1}],
    "metadata": {"order": "1002"},
}
# The other create branch: one item from amount/description, no email, no metadata.
SIMPLE_SPEC: dict[str, object] = {
    "amount": 2500, "currency": "eur", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "description": "Gift card",
}


def request(spec: dict[str, object] | None = None) -> CreateSession:
    ref = ObjectRef("shop", "order-1002", str(uuid.uuid4()))
    return CreateSession(ref, PaymentSessionSpec.from_dict(spec or FULL_SPEC),
                         dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


def provider(base: str, *, attempts: int = 4,
             transport: httpx.AsyncBaseTransport | None = None) -> StripeProvider:
    return StripeProvider(api_base=base, limiter=RateLimiter(rate=50, burst=5),
                          attempts=attempts, backoff_base=0.05, backoff_cap=0.2,
                          transport=transport)


class Recording(httpx.AsyncBaseTransport):
    """The real HTTP transport, keeping each request the adapter sent and its answer."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[httpx.Request, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.sent.append((request, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.parametrize("spec", [FULL_SPEC, SIMPLE_SPEC], ids=["line-items", "simple"])
async def test_stripe_mock_accepts_create_retrieve_and_expire(
        stripe_mock: StripeMock, spec: dict[str, object]) -> None:
    """stripe-mock validates each request against Stripe's OpenAPI spec: any unknown or
    ill-typed parameter (a wrong expand[] too) is a 400 there."""
    recording = Recording()
    stripe = provider(stripe_mock.url, transport=recording)
    key = SecretStr(stripe_mock.api_key)
    try:
        created = await stripe.create_session(request(spec), key)
        session_id = created.snapshot.session_id
        assert session_id.startswith("cs_")
        fetched = await stripe.get_session(session_id, key)
        assert fetched.snapshot.session_id
        # stripe-mock answers the expansion with an object: the adapter reads its id.
        assert fetched.snapshot.payment_intent_id
        assert fetched.snapshot.payment_intent_id.startswith("pi_")
        expired = await stripe.expire_session(session_id, key)
        assert expired.snapshot.session_id
    finally:
        await stripe.aclose()
    assert [(r.method, r.url.path, status) for r, status in recording.sent] == [
        ("POST", "/v1/checkout/sessions", 200),
        ("GET", f"/v1/checkout/sessions/{session_id}", 200),
        ("POST", f"/v1/checkout/sessions/{session_id}/expire", 200),
    ]
    create, retrieve, expire = (r for r, _ in recording.sent)
    form = dict(parse_qsl(create.content.decode()))
    assert ("customer_email" in form) == ("customerEmail" in spec)
    own_metadata = cast(dict[str, str], spec.get("metadata", {}))
    assert {k for k in form if k.startswith("metadata[")} == {
        *(f"metadata[{k}]" for k in own_metadata),
        "metadata[paykube_namespace]", "metadata[paykube_name]", "metadata[paykube_uid]"}
    items = {k.split("]")[0] for k in form if k.startswith("line_items[")}
    assert len(items) == len(cast(list[object], spec.get("lineItems", [None])))
    assert create.headers["Idempotency-Key"].endswith(":create")
    # The SDK indexes every list (expand[0]); Stripe and stripe-mock read it as expand[].
    assert parse_qsl(retrieve.url.query.decode()) == [("expand[0]", "payment_intent")]
    assert expire.content == b"" and expire.headers["Idempotency-Key"]


async def test_stripe_mock_errors_map_to_permanent_rejections(stripe_mock: StripeMock) -> None:
    """stripe-mock's error bodies (here its OpenAPI check of `limit`) come out of the SDK as
    a permanent ProviderRejected with Stripe's own fields."""
    stripe = provider(stripe_mock.url)
    sessions = stripe._client.v1.checkout.sessions
    bad: Any = {"limit": "not-a-number"}
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe._call("list", AccountCredentials(SecretStr(stripe_mock.api_key)),
                               Priority.POLL, lambda o: sessions.list_async(bad, o))
        assert caught.value.code is ErrorCode.PROVIDER_REJECTED
        assert (caught.value.http_status, caught.value.error_type) == (
            400, "invalid_request_error")
        assert not caught.value.retryable
    finally:
        await stripe.aclose()


async def test_stripe_mock_accepts_the_account_check_and_endpoint_calls(
        stripe_mock: StripeMock) -> None:
    """The provider-account calls (key check, webhook endpoint list/create/delete) have the
    shapes Stripe's OpenAPI wants, with the pinned version and the Connect header."""
    recording = Recording()
    stripe = provider(stripe_mock.url, transport=recording)
    account = AccountCredentials(SecretStr(stripe_mock.api_key), "2025-03-31.basil",
                                 "acct_1Connected")
    try:
        with contextlib.suppress(ProviderError):  # stripe-mock's fixtures are not ours
            await stripe.identify(account)
        with contextlib.suppress(ProviderError):
            await stripe.ensure_webhook_endpoint(account, "https://hooks.example/x")
        await stripe.delete_webhook_endpoint(account, "we_1Abc")
    finally:
        await stripe.aclose()
    sent = [(r.method, r.url.path, status) for r, status in recording.sent]
    assert all(status == 200 for _, _, status in sent), sent
    assert {path for _, path, _ in sent} >= {"/v1/account", "/v1/webhook_endpoints",
                                             "/v1/webhook_endpoints/we_1Abc"}
    for sent_request, _ in recording.sent:
        assert sent_request.headers["Stripe-Version"] == "2025-03-31.basil"
    by_path = {(r.method, r.url.path): r for r, _ in recording.sent}
    # The key check acts on the connected account; endpoints belong to the platform.
    assert by_path[("GET", "/v1/account")].headers["Stripe-Account"] == "acct_1Connected"
    assert "Stripe-Account" not in by_path[("DELETE", "/v1/webhook_endpoints/we_1Abc")].headers


@pytest.mark.parametrize("hostile", ["", "cs_test_../../refunds?x=", "cs_test_a/cancel#",
                                     "pi_123", "../../v1/payment_intents/pi_1/cancel"])
async def test_ids_of_another_shape_never_reach_a_path(hostile: str) -> None:
    recording = Recording()
    stripe = provider("http://127.0.0.1:9", transport=recording)
    try:
        for call in (stripe.get_session, stripe.expire_session):
            with pytest.raises(ProviderError) as caught:
                await call(hostile, KEY)
            assert caught.value.code is ErrorCode.PAYLOAD_INVALID
            assert not caught.value.retryable
    finally:
        await stripe.aclose()
    assert recording.sent == []


async def test_create_is_idempotent_per_object(async_stripe_emulator: StripeEmulator,
                                               async_stripe_control: AsyncEmulatorControl) -> None:
    stripe = provider(async_stripe_emulator.base_url)
    try:
        req = request()
        first = await stripe.create_session(req, KEY)
        second = await stripe.create_session(req, KEY)
        assert first.snapshot.session_id == second.snapshot.session_id
        assert first.phase is Phase.OPEN
        assert first.snapshot.amount_total == 5497
    finally:
        await stripe.aclose()


async def timed_create(base_url: str) -> tuple[ProviderSession, float]:
    """One create through a fresh adapter, and how long it took (retries included)."""
    stripe = provider(base_url)
    try:
        started = time.monotonic()
        created = await stripe.create_session(request(), KEY)
        return created, time.monotonic() - started
    finally:
        await stripe.aclose()


async def test_429_500_and_dropped_connections_are_retried(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    """Retry-After is waited out (the backoff alone would take under 0.4 s), and a dropped
    connection after the session was made replays it under the same idempotency key."""
    await async_stripe_control.add_fault("rate_limit", count=1, retry_after=1, method="POST")
    await async_stripe_control.add_fault("api_error", count=1, method="POST")
    await async_stripe_control.add_fault("drop", count=1, method="POST")
    created, elapsed = await timed_create(async_stripe_emulator.base_url)
    assert created.phase is Phase.OPEN
    assert elapsed >= 1.0
    seen = await async_stripe_control.requests("/v1/checkout/sessions")
    assert [(r["status"], r["fault"], r["replayed"]) for r in seen] == [
        (429, "rate_limit", False), (500, "api_error", False), (200, "drop", False),
        (200, None, True),
    ]
    assert (await async_stripe_control.stats())["sessions_created"] == 1


async def test_retry_after_as_an_http_date_is_respected(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    await async_stripe_control.add_fault("rate_limit", count=1, retry_after=2,
                                         retry_after_date=True)
    created, elapsed = await timed_create(async_stripe_emulator.base_url)
    assert created.phase is Phase.OPEN
    # The date is rounded up to a whole second past now + 2 s, so the wait is at least 2 s
    # (give or take the difference between the wall clock and the monotonic one).
    assert elapsed >= 1.95
    assert len(await async_stripe_control.requests("/v1/checkout/sessions")) == 2


async def test_a_cut_2xx_body_is_retried_and_the_create_replayed(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    stripe = provider(async_stripe_emulator.base_url)
    await async_stripe_control.add_fault("garbage", count=1, method="POST")
    try:
        created = await stripe.create_session(request(), KEY)
    finally:
        await stripe.aclose()
    assert created.phase is Phase.OPEN
    seen = await async_stripe_control.requests("/v1/checkout/sessions")
    assert [(r["fault"], r["replayed"]) for r in seen] == [("garbage", False), (None, True)]
    assert (await async_stripe_control.stats())["sessions_created"] == 1


async def test_a_2xx_that_is_never_json_is_a_retryable_unavailability(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    stripe = provider(async_stripe_emulator.base_url, attempts=2)
    try:
        created = await stripe.create_session(request(), KEY)
        await async_stripe_control.add_fault("garbage", count=None, method="GET")
        with pytest.raises(ProviderError) as caught:
            await stripe.get_session(created.snapshot.session_id, KEY)
    finally:
        await stripe.aclose()
    assert (caught.value.code, caught.value.http_status) == (ErrorCode.PROVIDER_UNAVAILABLE, 200)
    assert caught.value.retryable
    path = f"/v1/checkout/sessions/{created.snapshot.session_id}"
    assert len(await async_stripe_control.requests(path)) == 2


async def test_persistent_unavailability_is_retryable(async_stripe_emulator: StripeEmulator,
                                                      async_stripe_control: AsyncEmulatorControl,
                                                      ) -> None:
    stripe = provider(async_stripe_emulator.base_url, attempts=2)
    await async_stripe_control.add_fault("api_error", count=None)
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe.create_session(request(), KEY)
        assert caught.value.code is ErrorCode.PROVIDER_UNAVAILABLE
        assert caught.value.retryable
    finally:
        await stripe.aclose()


async def test_4xx_is_permanent_with_stripe_code_and_doc_url(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    stripe = provider(async_stripe_emulator.base_url)
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe.get_session("cs_test_missing", KEY)
        error = caught.value
        assert (error.code, error.provider_code) == (ErrorCode.PROVIDER_REJECTED,
                                                     "resource_missing")
        assert error.doc_url and error.doc_url.startswith("https://")
        assert not error.retryable
    finally:
        await stripe.aclose()


async def test_expiring_a_paid_session_reports_paid(async_stripe_emulator: StripeEmulator,
                                                    async_stripe_control: AsyncEmulatorControl,
                                                    ) -> None:
    stripe = provider(async_stripe_emulator.base_url)
    try:
        created = await stripe.create_session(request(), KEY)
        await async_stripe_control.transition(created.snapshot.session_id, "paid")
        result = await stripe.expire_session(created.snapshot.session_id, KEY)
        assert result.phase is Phase.PAID
    finally:
        await stripe.aclose()


@pytest.mark.parametrize(
    ("actions", "phase"),
    [
        (["async_pending"], Phase.PROCESSING),
        (["async_pending", "async_failed"], Phase.FAILED),
        (["async_pending", "async_succeeded"], Phase.PAID),
        (["paid"], Phase.PAID),
    ],
)
async def test_poll_sees_the_async_outcome_without_any_event(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
        actions: list[Action], phase: Phase) -> None:
    """The session stays complete/unpaid after an async failure: only the intent tells."""
    stripe = provider(async_stripe_emulator.base_url)
    try:
        created = await stripe.create_session(request(), KEY)
        for action in actions:
            await async_stripe_control.transition(created.snapshot.session_id, action)
        polled = await stripe.get_session(created.snapshot.session_id, KEY)
        assert polled.phase is phase
        assert polled.snapshot.payment_intent_id
        assert polled.snapshot.payment_intent_id.startswith("pi_")
    finally:
        await stripe.aclose()


async def test_pinned_version_and_connect_account_reach_stripe_per_call(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    """One adapter, two accounts: each request carries its own account's Stripe-Version and
    (for the connected one only) Stripe-Account, as the emulator's request log shows."""
    platform_key = f"sk_test_platform_{uuid.uuid4().hex[:12]}"
    platform_id = (await async_stripe_control.create_account(keys=[platform_key]))["id"]
    connected = (await async_stripe_control.create_account(
        account_id=f"acct_{uuid.uuid4().hex[:16]}", platform=platform_id))["id"]
    pinned = AccountCredentials(SecretStr(platform_key), "2025-03-31.basil", connected)
    stripe = provider(async_stripe_emulator.base_url)
    try:
        on_connected = await stripe.create_session(request(), pinned)
        on_platform = await stripe.create_session(request(), SecretStr(platform_key))
        polled = await stripe.get_session(on_connected.snapshot.session_id, pinned)
    finally:
        await stripe.aclose()
    assert on_connected.snapshot.account == connected == polled.snapshot.account
    assert on_platform.snapshot.account is None
    seen = await async_stripe_control.requests(key_account_id=platform_id)
    assert [(r["method"], r["stripe_version"], r["stripe_account"], r["account_id"], r["status"])
            for r in seen] == [
        ("POST", "2025-03-31.basil", connected, connected, 200),
        ("POST", DEFAULT_STRIPE_API_VERSION, None, platform_id, 200),
        ("GET", "2025-03-31.basil", connected, connected, 200),
    ]
    assert seen[0]["idempotency_key"].startswith("paykube:")


async def test_sdk_errors_keep_stripes_fields_and_retry_after(
        async_stripe_emulator: StripeEmulator, async_stripe_control: AsyncEmulatorControl,
) -> None:
    """Whatever class the SDK raises, paykube's error keeps code, param, type, doc_url, the
    HTTP status and Retry-After, and its retryability follows the status."""
    stripe = provider(async_stripe_emulator.base_url, attempts=1)
    await async_stripe_control.add_fault("rate_limit", count=1, retry_after=7, method="POST")
    # Only the sync control client takes a PSP error; the emulator runs in this loop.
    with EmulatorControl(async_stripe_emulator.base_url) as control:
        await asyncio.to_thread(
            control.add_fault, "stripe_error", count=1, method="POST",
            error={"status": 400, "code": "parameter_invalid_integer", "param": "expires_at",
                   "message": "Invalid integer: soon"})
    try:
        with pytest.raises(ProviderError) as limited:
            await stripe.create_session(request(), KEY)
        with pytest.raises(ProviderError) as rejected:
            await stripe.create_session(request(), KEY)
    finally:
        await stripe.aclose()
    first = limited.value
    assert (first.code, first.http_status, first.retry_after, first.provider_code,
            first.error_type) == (ErrorCode.RATE_LIMITED, 429, 7.0, "rate_limit",
                                  "invalid_request_error")
    assert first.doc_url and first.doc_url.endswith("/rate-limit")
    assert first.retryable
    second = rejected.value
    assert (second.code, second.http_status, second.provider_code, second.param,
            second.error_type, str(second)) == (
        ErrorCode.PROVIDER_REJECTED, 400, "parameter_invalid_integer", "expires_at",
        "invalid_request_error", "Invalid integer: soon")
    assert second.doc_url and second.doc_url.endswith("/parameter-invalid-integer")
    assert second.retry_after is None and not second.retryable


async def test_an_unreachable_stripe_is_a_retryable_unavailability() -> None:
    """A refused connection is the SDK's APIConnectionError: retried by paykube's loop (one
    request per attempt: the SDK's own retries are off), then ProviderUnavailable."""
    recording = Recording()
    stripe = provider("http://127.0.0.1:9", attempts=2, transport=recording)
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe.get_session("cs_test_a1", KEY)
    finally:
        await stripe.aclose()
    assert caught.value.code is ErrorCode.PROVIDER_UNAVAILABLE and caught.value.retryable
    assert caught.value.http_status is None


async def test_the_default_transport_turns_refusals_and_stalls_into_retryable_errors(
        ) -> None:
    """Without an injected transport the SDK speaks over aiohttp: a refused connection and
    a server that never answers (within the provider's timeout) are PROVIDER_UNAVAILABLE,
    retryable, and nothing else escapes."""
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)  # never answers
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    refused_port = free_port()
    try:
        for base, timeout in ((f"http://127.0.0.1:{refused_port}", 5.0),
                              (f"http://127.0.0.1:{port}", 0.5)):
            stripe = StripeProvider(api_base=base, limiter=RateLimiter(rate=50, burst=5),
                                    attempts=1, timeout=timeout)
            began = time.monotonic()
            try:
                with pytest.raises(ProviderError) as caught:
                    await stripe.create_session(request(), KEY)
            finally:
                await stripe.aclose()
            assert caught.value.code is ErrorCode.PROVIDER_UNAVAILABLE, base
            assert caught.value.retryable
            assert time.monotonic() - began < 5.0
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_a_call_after_close_is_a_retryable_unavailability(
        async_stripe_emulator: StripeEmulator) -> None:
    """A poll still running while the operator shuts down meets a closed client: a
    retryable PROVIDER_UNAVAILABLE, not a bare RuntimeError."""
    stripe = provider(async_stripe_emulator.base_url, attempts=1)
    created = await stripe.create_session(request(), KEY)  # the session exists now
    await stripe.aclose()
    with pytest.raises(ProviderError) as caught:
        await stripe.get_session(created.snapshot.session_id, KEY)
    assert caught.value.code is ErrorCode.PROVIDER_UNAVAILABLE and caught.value.retryable
