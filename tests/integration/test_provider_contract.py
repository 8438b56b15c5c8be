"""The PaymentProvider contract, one suite for every PSP, each on its own emulator.

What the operator relies on from any provider adapter: a create answers an Open session
whose id has the provider's format; a repeated create for the same object (a crash between
the call and the status write) finds the same session; retrieve follows the PSP; the
request to end a session ends it, and when it already ended reports how; 5xx is retried
and 4xx is permanent; ids that could reach another URL path are refused before any call.

To add a PSP, write one `Harness` for it (its adapter, a key, and how its emulator pays,
expires and counts sessions) and add it to `HARNESSES`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, PaykubeError
from paykube.providers.base import AccountCredentials, CreateSession, PaymentProvider
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.razorpay import RazorpayProvider
from paykube.providers.stripe import StripeProvider
from paykube.settings import SecretStr
from paykube_dev.psp_emulator.faults import Fault
from paykube_dev.razorpay_emulator import RazorpayEmulator, account_id_for_key
from paykube_dev.stripe_emulator import StripeEmulator

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
    bad_account: AccountCredentials  # a key the PSP refuses
    pay: Callable[[str], Awaitable[None]]
    expire: Callable[[str], Awaitable[None]]  # the PSP expires it by itself
    created: Callable[[str], int]  # sessions the PSP holds for an object uid
    fail_next: Callable[[str, str], None]  # (method, path): one 500 there
    create_path: str
    foreign_id: str  # a well-formed id the account does not have
    account_id: str


def _limiter() -> RateLimiter:
    return RateLimiter(rate=200, burst=20)


@pytest_asyncio.fixture
async def stripe_harness() -> AsyncIterator[Harness]:
    async with StripeEmulator() as emulator:
        key = "sk_test_contract_" + secrets.token_hex(6)
        provider = StripeProvider(api_base=emulator.base_url, limiter=_limiter(),
                                  backoff_base=0.01, backoff_cap=0.05)
        state = emulator.state

        async def pay(session_id: str) -> None:
            await emulator.transition(session_id, "paid")

        async def expire(session_id: str) -> None:
            await emulator.transition(session_id, "expire")

        def created(uid: str) -> int:
            return sum(1 for s in state.sessions.values() if s.client_reference_id == uid)

        def fail_next(method: str, path: str) -> None:
            state.faults.add(Fault("api_error", method=method, path=path))

        revoked = "sk_test_revoked_" + secrets.token_hex(6)
        state.book.revoked.add(revoked)
        identity = await provider.identify(AccountCredentials(SecretStr(key)))
        yield Harness("stripe", provider, AccountCredentials(SecretStr(key)),
                      AccountCredentials(SecretStr(revoked)), pay, expire, created, fail_next,
                      "/v1/checkout/sessions", "cs_test_" + "a" * 58, identity.account_id)
        await provider.aclose()


@pytest_asyncio.fixture
async def razorpay_harness() -> AsyncIterator[Harness]:
    async with RazorpayEmulator() as emulator:
        key_id, secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        account_id = account_id_for_key(key_id)
        provider = RazorpayProvider(api_base=emulator.base_url, limiter=_limiter(),
                                    backoff_base=0.01, backoff_cap=0.05)
        state = emulator.state
        state.book.for_key(key_id, secret, state.clock.now_int())

        async def pay(link_id: str) -> None:
            await emulator.transition(link_id, "pay")

        async def expire(link_id: str) -> None:
            await emulator.transition(link_id, "expire")

        def created(uid: str) -> int:
            return sum(1 for link in state.links.values() if link.reference_id == uid)

        def fail_next(method: str, path: str) -> None:
            state.faults.add(Fault("api_error", method=method, path=path))

        def account(value: str) -> AccountCredentials:
            return AccountCredentials(SecretStr(value), account_id=account_id)

        yield Harness("razorpay", provider, account(f"{key_id}:{secret}"),
                      account(f"{key_id}:not-the-secret"), pay, expire, created, fail_next,
                      "/v1/payment_links", "plink_" + "A" * 14, account_id)
        await provider.aclose()


HARNESSES = ["stripe_harness", "razorpay_harness"]


@pytest.fixture(params=HARNESSES)
def psp(request: pytest.FixtureRequest) -> Harness:
    harness: Harness = request.getfixturevalue(request.param)
    return harness


def create_request(spec: dict[str, object] | None = None) -> CreateSession:
    ref = ObjectRef("shop", "order-1002", str(uuid.uuid4()))
    return CreateSession(ref, PaymentSessionSpec.from_dict(spec or SPEC),
                         dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


async def test_create_opens_a_session_in_the_spec_amount(psp: Harness) -> None:
    request = create_request()
    session = await psp.provider.create_session(request, psp.account)
    snap = session.snapshot
    assert session.phase is Phase.OPEN
    assert psp.provider.valid_session_id(snap.session_id)
    assert (snap.amount_total, snap.currency) == (2500, "eur")
    assert snap.url and snap.url.startswith(("http://", "https://"))
    assert snap.provider == psp.name == psp.provider.name
    assert snap.expires_at is not None
    assert psp.created(request.ref.uid) == 1


async def test_a_repeated_create_finds_the_same_session(psp: Harness) -> None:
    """The operator crashed after the call and before the status write: its retry after
    restart must not make a second session."""
    request = create_request()
    first = await psp.provider.create_session(request, psp.account)
    again = await psp.provider.create_session(request, psp.account)
    assert again.snapshot.session_id == first.snapshot.session_id
    assert again.phase is Phase.OPEN
    assert psp.created(request.ref.uid) == 1


async def test_retrieve_follows_payment_and_expiry(psp: Harness) -> None:
    paid = await psp.provider.create_session(create_request(), psp.account)
    await psp.pay(paid.snapshot.session_id)
    seen = await psp.provider.get_session(paid.snapshot.session_id, psp.account)
    assert seen.phase is Phase.PAID
    assert seen.snapshot.payment_intent_id is not None
    late = await psp.provider.create_session(create_request(), psp.account)
    await psp.expire(late.snapshot.session_id)
    assert (await psp.provider.get_session(late.snapshot.session_id, psp.account)
            ).phase is Phase.EXPIRED


async def test_ending_on_request_ends_an_open_session(psp: Harness) -> None:
    """Stripe expires, Razorpay cancels: either way the session is over, and the lifecycle
    records Canceled (an Expired answer to our own request means Canceled)."""
    session = await psp.provider.create_session(create_request(), psp.account)
    ended = await psp.provider.expire_session(session.snapshot.session_id, psp.account)
    assert ended.phase in (Phase.EXPIRED, Phase.CANCELED)
    again = await psp.provider.get_session(session.snapshot.session_id, psp.account)
    assert again.phase is ended.phase


async def test_ending_a_paid_session_reports_paid(psp: Harness) -> None:
    session = await psp.provider.create_session(create_request(), psp.account)
    await psp.pay(session.snapshot.session_id)
    ended = await psp.provider.expire_session(session.snapshot.session_id, psp.account)
    assert ended.phase is Phase.PAID


async def test_a_server_error_is_retried_to_one_session(psp: Harness) -> None:
    psp.fail_next("POST", psp.create_path)
    request = create_request()
    session = await psp.provider.create_session(request, psp.account)
    assert session.phase is Phase.OPEN
    assert psp.created(request.ref.uid) == 1


async def test_a_refused_key_is_permanent(psp: Harness) -> None:
    with pytest.raises(PaykubeError) as refused:
        await psp.provider.create_session(create_request(), psp.bad_account)
    assert refused.value.code is ErrorCode.CREDENTIALS_INVALID
    assert not refused.value.retryable


async def test_an_unknown_session_is_a_permanent_refusal(psp: Harness) -> None:
    with pytest.raises(PaykubeError) as refused:
        await psp.provider.get_session(psp.foreign_id, psp.account)
    assert refused.value.code is ErrorCode.PROVIDER_REJECTED


@pytest.mark.parametrize("hostile", ["../../v1/account", "x?expand=1", "", "plink_ab/cancel",
                                     "cs_test_a/../../b", "%2e%2e"])
async def test_ids_that_could_reach_another_path_are_refused_before_any_call(
        psp: Harness, hostile: str) -> None:
    assert not psp.provider.valid_session_id(hostile)
    for call in (psp.provider.get_session, psp.provider.expire_session):
        with pytest.raises(PaykubeError) as refused:
            await call(hostile, psp.account)
        assert refused.value.code is ErrorCode.PAYLOAD_INVALID


async def test_identify_names_the_account_and_the_mode(psp: Harness) -> None:
    identity = await psp.provider.identify(psp.account)
    assert identity.account_id == psp.account_id
    assert identity.livemode is False
    with pytest.raises(PaykubeError) as refused:
        await psp.provider.identify(psp.bad_account)
    assert refused.value.code is ErrorCode.CREDENTIALS_INVALID
