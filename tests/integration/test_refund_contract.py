"""The PaymentProvider refund contract, one suite for every PSP that refunds, each on its
own emulator; and the Stripe adapter's refund requests against stripe-mock (Stripe's
OpenAPI spec as the independent check of their shapes).

What the operator relies on (docs/refunds.md): a create refunds the amount on the payment
and says which PaymentRefund it is for; a repeated create (a crash after the call) gets
the same refund back; retrieve follows the PSP (pending, then succeeded or failed, and a
bank's return); the list shows every refund of the payment, those made in the Dashboard
too; more than the rest is a permanent refusal with the PSP's code; 5xx and 429 are
retried to exactly one refund; ids that could reach another URL path never reach one.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pytest
import pytest_asyncio

from paykube.api.types import ObjectRef, PaymentSessionSpec, RefundPhase
from paykube.errors import ErrorCode, PaykubeError, ProviderError
from paykube.providers import stripe as stripe_provider
from paykube.providers.base import (
    AccountCredentials,
    CreateRefund,
    CreateSession,
    PaymentProvider,
    ProviderPayloadInvalid,
)
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.razorpay import RazorpayProvider
from paykube.providers.stripe import REFUND_EVENTS, StripeProvider
from paykube.settings import SecretStr
from paykube_dev.razorpay_emulator import AsyncRazorpayControl, RazorpayEmulator, account_id_for_key
from paykube_dev.services import StripeMock
from paykube_dev.stripe_emulator import AsyncEmulatorControl, StripeEmulator
from tests.integration.test_stripe_adapter import Recording

pytestmark = pytest.mark.integration

SPEC: dict[str, object] = {
    "amount": 2500, "currency": "eur", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "description": "Gift card",
    "metadata": {"order": "1002"},
}


@dataclass
class Harness:
    """One PSP's adapter on its emulator, and the emulator-side moves the suite needs."""

    name: str
    provider: PaymentProvider
    account: AccountCredentials
    pay: Callable[[str], Awaitable[None]]  # pays a session the adapter opened
    refunds_at_psp: Callable[[str], Awaitable[list[dict[str, object]]]]  # of a payment
    start_pending: Callable[[str], Awaitable[None]]  # the payment's next refunds pend
    settle: Callable[[str, str], Awaitable[None]]  # (refund id, succeeded | failed)
    outside_refund: Callable[[str, int], Awaitable[str]]  # a Dashboard refund: its id
    fail_next: Callable[[str, str, str], Awaitable[None]]  # (kind, method, path)
    refund_path: Callable[[str], str]  # the create's path for a payment
    requests: Callable[[], Awaitable[int]]  # API requests the emulator saw
    foreign_refund_id: str  # well-formed, not the account's
    failure_reasons: bool = True  # whether the PSP says why a refund failed


def _limiter() -> RateLimiter:
    return RateLimiter(rate=200, burst=20)


@pytest_asyncio.fixture
async def stripe_harness() -> AsyncIterator[Harness]:
    async with StripeEmulator() as emulator, AsyncEmulatorControl(emulator.base_url) as ctl:
        key = "sk_test_refunds_" + secrets.token_hex(6)
        provider = StripeProvider(api_base=emulator.base_url, limiter=_limiter(),
                                  backoff_base=0.01, backoff_cap=0.05)

        async def pay(session_id: str) -> None:
            await ctl.transition(session_id, "paid")

        async def refunds_at_psp(payment_id: str) -> list[dict[str, object]]:
            return await ctl.refunds(payment_id)

        async def start_pending(payment_id: str) -> None:
            await ctl.refund_mode("pending", payment_id)

        async def settle(refund_id: str, outcome: str) -> None:
            await ctl.refund_transition(refund_id, outcome)

        async def outside_refund(payment_id: str, amount: int) -> str:
            return str((await ctl.dashboard_refund(payment_id, amount))["refund"]["id"])

        async def fail_next(kind: str, method: str, path: str) -> None:
            await ctl.add_fault(kind, method=method, path=path)

        async def requests() -> int:
            return len(await ctl.requests())

        yield Harness("stripe", provider, AccountCredentials(SecretStr(key)), pay,
                      refunds_at_psp, start_pending, settle, outside_refund, fail_next,
                      lambda _payment: "/v1/refunds", requests, "re_" + "A" * 24)
        await provider.aclose()


@pytest_asyncio.fixture
async def razorpay_harness() -> AsyncIterator[Harness]:
    async with RazorpayEmulator() as emulator, AsyncRazorpayControl(emulator.base_url) as ctl:
        key_id, secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        account_id = account_id_for_key(key_id)
        provider = RazorpayProvider(api_base=emulator.base_url, limiter=_limiter(),
                                    backoff_base=0.01, backoff_cap=0.05)
        emulator.state.book.for_key(key_id, secret, emulator.state.clock.now_int())

        async def pay(link_id: str) -> None:
            await ctl.transition(link_id, "pay")

        async def refunds_at_psp(payment_id: str) -> list[dict[str, object]]:
            return await ctl.refunds(payment_id)

        async def start_pending(payment_id: str) -> None:
            await ctl.refund_mode("pending", payment_id)

        async def settle(refund_id: str, outcome: str) -> None:
            await ctl.refund_transition(
                refund_id, "processed" if outcome == "succeeded" else outcome)

        async def outside_refund(payment_id: str, amount: int) -> str:
            return str((await ctl.dashboard_refund(payment_id, amount))["refund"]["id"])

        async def fail_next(kind: str, method: str, path: str) -> None:
            await ctl.add_fault(kind, method=method, path=path)

        async def requests() -> int:
            return len(await ctl.requests())

        account = AccountCredentials(SecretStr(f"{key_id}:{secret}"), account_id=account_id)
        yield Harness("razorpay", provider, account, pay, refunds_at_psp, start_pending,
                      settle, outside_refund, fail_next,
                      lambda payment: f"/v1/payments/{payment}/refund", requests,
                      "rfnd_" + "A" * 14, failure_reasons=False)
        await provider.aclose()


HARNESSES = ["stripe_harness", "razorpay_harness"]


@pytest.fixture(params=HARNESSES)
def psp(request: pytest.FixtureRequest) -> Harness:
    harness: Harness = request.getfixturevalue(request.param)
    return harness


def session_ref() -> ObjectRef:
    return ObjectRef("shop", "order-1002", str(uuid.uuid4()))


async def paid_payment(psp: Harness) -> tuple[ObjectRef, str]:
    """A session the adapter opened and the emulator paid: (its object, its payment id)."""
    ref = session_ref()
    request = CreateSession(ref, PaymentSessionSpec.from_dict(SPEC),
                            dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    session = await psp.provider.create_session(request, psp.account)
    await psp.pay(session.snapshot.session_id)
    paid = await psp.provider.get_session(session.snapshot.session_id, psp.account)
    assert paid.snapshot.payment_intent_id is not None
    return ref, paid.snapshot.payment_intent_id


def refund_request(session: ObjectRef, payment_id: str, amount: int,
                   metadata: dict[str, str] | None = None) -> CreateRefund:
    ref = ObjectRef("shop", f"refund-{secrets.token_hex(3)}", str(uuid.uuid4()))
    return CreateRefund(ref, session, payment_id, amount, "eur", "requested_by_customer",
                        metadata)


async def test_a_create_refunds_the_amount_for_its_object(psp: Harness) -> None:
    session, payment_id = await paid_payment(psp)
    request = refund_request(session, payment_id, 1000,
                             {"ticket": "SUP-1", "paykube_uid": "forged"})
    refund = await psp.provider.create_refund(request, psp.account)
    assert psp.provider.valid_refund_id(refund.refund_id)
    assert refund.phase is RefundPhase.SUCCEEDED
    assert (refund.amount, refund.currency, refund.payment_id) == (1000, "eur", payment_id)
    assert refund.refund_uid == request.ref.uid  # the user's paykube_uid never wins
    (at_psp,) = await psp.refunds_at_psp(payment_id)
    assert at_psp["id"] == refund.refund_id


async def test_a_repeated_create_gets_the_same_refund(psp: Harness) -> None:
    """The operator crashed after the call and before the status write: its create after
    the restart must not refund twice."""
    session, payment_id = await paid_payment(psp)
    request = refund_request(session, payment_id, 1000)
    first = await psp.provider.create_refund(request, psp.account)
    again = await psp.provider.create_refund(request, psp.account)
    assert again.refund_id == first.refund_id
    assert len(await psp.refunds_at_psp(payment_id)) == 1


async def test_retrieve_follows_pending_to_succeeded_and_to_failed(psp: Harness) -> None:
    session, payment_id = await paid_payment(psp)
    await psp.start_pending(payment_id)
    one = await psp.provider.create_refund(refund_request(session, payment_id, 500),
                                           psp.account)
    two = await psp.provider.create_refund(refund_request(session, payment_id, 700),
                                           psp.account)
    assert (one.phase, two.phase) == (RefundPhase.PENDING, RefundPhase.PENDING)
    await psp.settle(one.refund_id, "succeeded")
    await psp.settle(two.refund_id, "failed")
    seen_one = await psp.provider.get_refund(one.refund_id, psp.account)
    seen_two = await psp.provider.get_refund(two.refund_id, psp.account)
    assert seen_one.phase is RefundPhase.SUCCEEDED
    assert seen_two.phase is RefundPhase.FAILED
    assert bool(seen_two.failure_reason) is psp.failure_reasons
    assert seen_two.amount == 700


async def test_the_list_shows_dashboard_refunds_too(psp: Harness) -> None:
    session, payment_id = await paid_payment(psp)
    ours = await psp.provider.create_refund(refund_request(session, payment_id, 1000),
                                            psp.account)
    theirs = await psp.outside_refund(payment_id, 300)
    listed = {r.refund_id: r for r in
              await psp.provider.list_refunds(payment_id, psp.account)}
    assert set(listed) == {ours.refund_id, theirs}
    assert listed[ours.refund_id].refund_uid == ours.refund_uid
    assert listed[theirs].refund_uid is None
    assert sum(r.amount for r in listed.values() if r.phase.holds_money) == 1300


async def test_more_than_the_rest_is_a_permanent_refusal(psp: Harness) -> None:
    session, payment_id = await paid_payment(psp)
    await psp.outside_refund(payment_id, 2000)
    with pytest.raises(ProviderError) as refused:
        await psp.provider.create_refund(refund_request(session, payment_id, 501),
                                         psp.account)
    assert refused.value.code is ErrorCode.PROVIDER_REJECTED
    assert not refused.value.retryable
    assert refused.value.provider_code  # the PSP's own code, for status.error
    assert len(await psp.refunds_at_psp(payment_id)) == 1


@pytest.mark.parametrize("kind", ["api_error", "rate_limit", "garbage", "drop"])
async def test_5xx_429_and_lost_answers_are_retried_to_one_refund(psp: Harness,
                                                                   kind: str) -> None:
    """garbage and drop: the PSP made the refund and the answer was lost; the retry must
    get that refund back (Stripe: by the idempotency key; Razorpay: by the receipt)."""
    session, payment_id = await paid_payment(psp)
    await psp.fail_next(kind, "POST", psp.refund_path(payment_id))
    refund = await psp.provider.create_refund(refund_request(session, payment_id, 1000),
                                              psp.account)
    assert [r["id"] for r in await psp.refunds_at_psp(payment_id)] == [refund.refund_id]


async def test_an_unknown_refund_is_a_permanent_refusal(psp: Harness) -> None:
    with pytest.raises(PaykubeError) as refused:
        await psp.provider.get_refund(psp.foreign_refund_id, psp.account)
    assert refused.value.code is ErrorCode.PROVIDER_REJECTED


@pytest.mark.parametrize("hostile", ["../../v1/account", "re_x?expand=1", "", "re_a/../b",
                                     "rfnd_ab/cancel", "%2e%2e", "pi_1/../../v1/refunds"])
async def test_ids_that_could_reach_another_path_never_reach_one(psp: Harness,
                                                                 hostile: str) -> None:
    before = await psp.requests()
    assert not psp.provider.valid_refund_id(hostile)
    session = session_ref()
    calls = [psp.provider.get_refund(hostile, psp.account),
             psp.provider.list_refunds(hostile, psp.account),
             psp.provider.create_refund(refund_request(session, hostile, 100), psp.account)]
    for call in calls:
        with pytest.raises(PaykubeError) as refused:
            await call
        assert refused.value.code is ErrorCode.PAYLOAD_INVALID
    assert await psp.requests() == before


# --- the Stripe adapter only ---------------------------------------------------------------


async def test_stripe_lists_follow_pagination_to_the_end_and_refuse_beyond_the_bound(
        stripe_harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    psp = stripe_harness
    _, payment_id = await paid_payment(psp)
    made = {await psp.outside_refund(payment_id, 100) for _ in range(5)}
    monkeypatch.setattr(stripe_provider, "REFUND_PAGE_SIZE", 2)
    listed = await psp.provider.list_refunds(payment_id, psp.account)
    assert {r.refund_id for r in listed} == made
    assert len(listed) == 5
    monkeypatch.setattr(stripe_provider, "MAX_REFUND_PAGES", 2)
    with pytest.raises(ProviderPayloadInvalid) as cut:
        await psp.provider.list_refunds(payment_id, psp.account)
    assert "more than 4 refunds" in str(cut.value)


async def test_stripe_refund_metadata_names_the_refund_and_its_session() -> None:
    async with StripeEmulator() as emulator, AsyncEmulatorControl(emulator.base_url) as ctl:
        provider = StripeProvider(api_base=emulator.base_url, limiter=_limiter())
        account = AccountCredentials(SecretStr("sk_test_" + secrets.token_hex(6)))
        try:
            ref = session_ref()
            request = CreateSession(ref, PaymentSessionSpec.from_dict(SPEC),
                                    dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
            session = await provider.create_session(request, account)
            paid = await ctl.transition(session.snapshot.session_id, "paid")
            payment_id = paid["session"]["payment_intent"]
            refund = refund_request(ref, payment_id, 900, {"ticket": "SUP-1",
                                                           "paykube_name": "forged"})
            made = await provider.create_refund(refund, account)
        finally:
            await provider.aclose()
        (at_psp,) = await ctl.refunds(payment_id)
        assert at_psp["metadata"] == {
            "ticket": "SUP-1", "paykube_namespace": "shop", "paykube_name": refund.ref.name,
            "paykube_uid": refund.ref.uid, "paykube_session": "order-1002"}
        assert at_psp["reason"] == "requested_by_customer"
        (post,) = await ctl.requests("/v1/refunds", method="POST")
        assert post["idempotency_key"] == f"paykube:{refund.ref.uid}:refund"
        # The charge carries the session's own keys: charge.refunded finds the session.
        charge = emulator.state.sessions[session.snapshot.session_id].payment_intent
        assert charge is not None
        assert charge.charge is not None
        assert charge.charge.metadata == {"order": "1002", "paykube_namespace": "shop",
                                          "paykube_name": "order-1002", "paykube_uid": ref.uid}
        assert made.refund_uid == refund.ref.uid


async def test_stripe_webhook_endpoints_subscribe_to_refund_events() -> None:
    """A new endpoint gets them; one registered before refunds existed gets them added."""
    async with StripeEmulator() as emulator:
        provider = StripeProvider(api_base=emulator.base_url, limiter=_limiter())
        account = AccountCredentials(SecretStr("sk_test_" + secrets.token_hex(6)))
        try:
            fresh = await provider.ensure_webhook_endpoint(account, "https://hooks.example/a")
            endpoints = provider._client.v1.webhook_endpoints
            old = await endpoints.create_async(
                {"url": "https://hooks.example/b",
                 "enabled_events": ["checkout.session.completed"]},
                {"api_key": account.api_key.get()})
            found = await provider.ensure_webhook_endpoint(account, "https://hooks.example/b")
            again = await provider.ensure_webhook_endpoint(account, "https://hooks.example/b")
        finally:
            await provider.aclose()
        assert (found.id, again.id) == (old.id, old.id)
        for endpoint_id in (fresh.id, old.id):
            events = set(emulator.state.endpoints[endpoint_id].enabled_events)
            assert events >= REFUND_EVENTS | {"checkout.session.completed"}
        updates = [r for r in emulator.state.requests
                   if r.method == "POST" and r.path == f"/v1/webhook_endpoints/{old.id}"]
        assert len(updates) == 1  # the second ensure found it subscribed


async def test_stripe_mock_accepts_the_refund_requests(stripe_mock: StripeMock) -> None:
    """stripe-mock validates each request against Stripe's OpenAPI spec (an unknown or
    ill-typed parameter is a 400 there) and answers with its fixtures, which the adapter's
    validation must read."""
    recording = Recording()
    provider = StripeProvider(api_base=stripe_mock.url, limiter=_limiter(),
                              transport=recording)
    account = AccountCredentials(SecretStr(stripe_mock.api_key))
    request = refund_request(session_ref(), "pi_1AbcMock", 1000, {"ticket": "SUP-1"})
    try:
        made = await provider.create_refund(request, account)
        fetched = await provider.get_refund(made.refund_id, account)
        listed = await provider.list_refunds("pi_1AbcMock", account)
    finally:
        await provider.aclose()
    assert provider.valid_refund_id(made.refund_id)
    assert fetched.refund_id == made.refund_id
    assert isinstance(listed, tuple)
    sent = [(r.method, r.url.path, status) for r, status in recording.sent]
    assert sent == [("POST", "/v1/refunds", 200),
                    ("GET", f"/v1/refunds/{made.refund_id}", 200),
                    ("GET", "/v1/refunds", 200)]
    create, _, listing = (r for r, _ in recording.sent)
    form = dict(parse_qsl(create.content.decode()))
    assert form == {
        "payment_intent": "pi_1AbcMock", "amount": "1000", "reason": "requested_by_customer",
        "metadata[ticket]": "SUP-1", "metadata[paykube_namespace]": "shop",
        "metadata[paykube_name]": request.ref.name, "metadata[paykube_uid]": request.ref.uid,
        "metadata[paykube_session]": "order-1002"}
    assert create.headers["Idempotency-Key"] == f"paykube:{request.ref.uid}:refund"
    assert dict(parse_qsl(listing.url.query.decode())) == {
        "payment_intent": "pi_1AbcMock", "limit": "100"}


async def test_stripe_mock_accepts_the_session_create_with_intent_metadata(
        stripe_mock: StripeMock) -> None:
    recording = Recording()
    provider = StripeProvider(api_base=stripe_mock.url, limiter=_limiter(),
                              transport=recording)
    ref = session_ref()
    request = CreateSession(ref, PaymentSessionSpec.from_dict(SPEC),
                            dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    try:
        await provider.create_session(request, SecretStr(stripe_mock.api_key))
    finally:
        await provider.aclose()
    ((create, status),) = recording.sent
    assert status == 200
    form = dict(parse_qsl(create.content.decode()))
    intent_metadata = {k.removeprefix("payment_intent_data[metadata][").rstrip("]"): v
                       for k, v in form.items() if k.startswith("payment_intent_data[")}
    assert intent_metadata == {"order": "1002", "paykube_namespace": "shop",
                               "paykube_name": "order-1002", "paykube_uid": ref.uid}



async def test_razorpay_creates_carry_the_idempotency_key_and_fall_back_on_the_receipt(
) -> None:
    """Razorpay's `X-Refund-Idempotency` is the first guard; should Razorpay no longer
    know the key, the receipt (the PaymentRefund's uid) refuses a second refund and the
    adapter finds the first in the payment's list."""
    async with RazorpayEmulator() as emulator, AsyncRazorpayControl(emulator.base_url) as ctl:
        key_id, secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        account = AccountCredentials(SecretStr(f"{key_id}:{secret}"),
                                     account_id=account_id_for_key(key_id))
        recording = Recording()
        provider = RazorpayProvider(api_base=emulator.base_url, limiter=_limiter(),
                                    transport=recording)
        try:
            session = session_ref()
            created = await provider.create_session(
                CreateSession(session, PaymentSessionSpec.from_dict(SPEC),
                              dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)), account)
            await ctl.transition(created.snapshot.session_id, "pay")
            paid = await provider.get_session(created.snapshot.session_id, account)
            payment_id = paid.snapshot.payment_intent_id
            assert payment_id is not None
            request = refund_request(session, payment_id, 1000)
            first = await provider.create_refund(request, account)
            emulator.state.refund_keys.clear()  # Razorpay forgot the key
            again = await provider.create_refund(request, account)
        finally:
            await provider.aclose()
    assert again.refund_id == first.refund_id
    assert list(emulator.state.refunds) == [first.refund_id]
    posts = [(r, status) for r, status in recording.sent if r.method == "POST"
             and r.url.path.endswith("/refund")]
    assert [status for _, status in posts] == [200, 400]  # the receipt refused the second
    assert {r.headers["X-Refund-Idempotency"] for r, _ in posts} == {
        f"paykube_{request.ref.uid}_refund"}
