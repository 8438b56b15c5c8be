"""The operator's Stripe adapter against stripe-mock (request shapes, Stripe's own OpenAPI
validation) and against the stateful emulator (idempotency, retries, faults)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, ProviderError
from paykube.providers.base import CreateSession
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.stripe import StripeProvider
from paykube.settings import SecretStr
from paykube_dev.services import StripeMock
from paykube_dev.stripe_emulator import AsyncEmulatorControl, StripeEmulator
from paykube_dev.stripe_emulator.state import Action

KEY = SecretStr("sk_test_adapter")


def request(**spec_overrides: object) -> CreateSession:
    spec = PaymentSessionSpec.from_dict({
        "amount": 5497, "currency": "eur", "successUrl": "https://shop.example/ok",
        "cancelUrl": "https://shop.example/cart", "customerEmail": "jane@example.com",
        "lineItems": [{"name": "Shirt", "unitAmount": 1999, "quantity": 2},
                      {"name": "Stickers", "unitAmount": 1499, "quantity": 1}],
        "metadata": {"order": "1002"}, **spec_overrides,
    })
    ref = ObjectRef("shop", "order-1002", str(uuid.uuid4()))
    return CreateSession(ref, spec, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


def provider(base: str, *, attempts: int = 4) -> StripeProvider:
    return StripeProvider(api_base=base, limiter=RateLimiter(rate=50, burst=5),
                          attempts=attempts, backoff_base=0.05, backoff_cap=0.2)


async def test_stripe_mock_accepts_create_retrieve_and_expire(stripe_mock: StripeMock) -> None:
    stripe = provider(stripe_mock.url)
    try:
        created = await stripe.create_session(request(), SecretStr(stripe_mock.api_key))
        assert created.snapshot.session_id.startswith("cs_")
        fetched = await stripe.get_session(created.snapshot.session_id,
                                           SecretStr(stripe_mock.api_key))
        assert fetched.snapshot.session_id
        expired = await stripe.expire_session(created.snapshot.session_id,
                                              SecretStr(stripe_mock.api_key))
        assert expired.snapshot.session_id
    finally:
        await stripe.aclose()


async def test_stripe_mock_errors_map_to_permanent_rejections(stripe_mock: StripeMock) -> None:
    """stripe-mock's error bodies parse into a permanent ProviderRejected."""
    stripe = provider(stripe_mock.url)
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe.get_session("", SecretStr(stripe_mock.api_key))
        assert caught.value.code is ErrorCode.PROVIDER_REJECTED
    finally:
        await stripe.aclose()


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


async def test_429_and_500_are_retried_with_backoff(async_stripe_emulator: StripeEmulator,
                                                    async_stripe_control: AsyncEmulatorControl,
                                                    ) -> None:
    stripe = provider(async_stripe_emulator.base_url)
    await async_stripe_control.add_fault("rate_limit", count=1, retry_after=1)
    await async_stripe_control.add_fault("api_error", count=1)
    try:
        created = await stripe.create_session(request(), KEY)
        assert created.phase is Phase.OPEN
    finally:
        await stripe.aclose()


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
