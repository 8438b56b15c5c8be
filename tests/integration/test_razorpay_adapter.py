"""The operator's Razorpay adapter on the Razorpay emulator, with the official `razorpay` SDK
as the independent check: the SDK reads back what the adapter created, and the SDK's
signature check agrees with the webhook's."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import razorpay

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, PaykubeError
from paykube.providers.base import AccountCredentials, CreateSession
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.razorpay import RazorpayProvider
from paykube.settings import SecretStr
from paykube_dev.psp_emulator.faults import Fault
from paykube_dev.razorpay_emulator import RazorpayEmulator, account_id_for_key, sign_body
from paykube_webhook.schemes.razorpay import compute_signature

SPEC: dict[str, Any] = {
    "amount": 90000, "currency": "inr", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "description": "Tea",
    "customerEmail": "asha@example.com", "metadata": {"order": "77"},
    "razorpay": {"acceptPartial": True, "customer": {"contact": "+919000090000"}},
}


class Tenant:
    def __init__(self, emulator: RazorpayEmulator) -> None:
        self.emulator = emulator
        self.key_id, self.secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        self.account_id = account_id_for_key(self.key_id)
        state = emulator.state
        state.book.for_key(self.key_id, self.secret, state.clock.now_int())
        self.account = AccountCredentials(SecretStr(f"{self.key_id}:{self.secret}"),
                                          account_id=self.account_id)
        self.provider = RazorpayProvider(api_base=emulator.base_url,
                                         limiter=RateLimiter(rate=200, burst=20),
                                         backoff_base=0.01, backoff_cap=0.05)

    def sdk(self) -> razorpay.Client:
        return razorpay.Client(auth=(self.key_id, self.secret), base_url=self.emulator.base_url)


@pytest_asyncio.fixture
async def tenant() -> AsyncIterator[Tenant]:
    async with RazorpayEmulator() as emulator:
        made = Tenant(emulator)
        yield made
        await made.provider.aclose()


def create_request(spec: dict[str, Any] | None = None) -> CreateSession:
    return CreateSession(ObjectRef("shop", "order-77", str(uuid.uuid4())),
                         PaymentSessionSpec.from_dict(spec or SPEC),
                         dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


async def test_the_sdk_reads_back_what_the_adapter_created(tenant: Tenant) -> None:
    request = create_request()
    session = await tenant.provider.create_session(request, tenant.account)
    # The SDK is synchronous and the emulator runs in this loop: the SDK goes to a thread.
    link = await asyncio.to_thread(tenant.sdk().payment_link.fetch, session.snapshot.session_id)
    assert (link["amount"], link["currency"], link["reference_id"]) == (
        90000, "INR", request.ref.uid)
    assert link["accept_partial"] is True
    assert link["customer"] == {"contact": "+919000090000", "email": "asha@example.com"}
    assert link["notes"] == {"order": "77", "paykube_namespace": "shop",
                             "paykube_name": "order-77", "paykube_uid": request.ref.uid}
    assert link["callback_url"] == "https://shop.example/ok"
    assert link["expire_by"] == int(request.expires_at.timestamp())
    assert session.snapshot.url == link["short_url"]
    assert session.snapshot.account == tenant.account_id


async def test_part_payment_is_processing_and_cannot_be_cancelled(tenant: Tenant) -> None:
    session = await tenant.provider.create_session(create_request(), tenant.account)
    link_id = session.snapshot.session_id
    await tenant.emulator.transition(link_id, "part_pay", amount=30000)
    assert (await tenant.provider.get_session(link_id, tenant.account)).phase \
        is Phase.PROCESSING
    ended = await tenant.provider.expire_session(link_id, tenant.account)
    assert ended.phase is Phase.PROCESSING  # Razorpay refused the cancel: reported as is
    await tenant.emulator.transition(link_id, "expire")
    failed = await tenant.provider.get_session(link_id, tenant.account)
    assert failed.phase is Phase.FAILED  # expired after a partial payment


async def test_a_cut_create_answer_is_retried_and_finds_the_link(tenant: Tenant) -> None:
    """The first answer is lost after the link was made (dropped connection), the second
    is refused as a duplicate reference: the adapter finds the one link."""
    state = tenant.emulator.state
    state.faults.add(Fault("drop", method="POST", path="/v1/payment_links"))
    request = create_request()
    session = await tenant.provider.create_session(request, tenant.account)
    links = [link for link in state.links.values() if link.reference_id == request.ref.uid]
    assert [link.id for link in links] == [session.snapshot.session_id]
    statuses = [r.status for r in state.requests if r.path == "/v1/payment_links"]
    assert 400 in statuses  # the duplicate reference refusal the adapter resolved


async def test_too_many_notes_are_refused_without_a_call(tenant: Tenant) -> None:
    spec = SPEC | {"metadata": {f"k{i}": "v" for i in range(13)}}
    with pytest.raises(PaykubeError) as refused:
        await tenant.provider.create_session(create_request(spec), tenant.account)
    assert refused.value.code is ErrorCode.PROVIDER_REJECTED
    assert not tenant.emulator.state.requests


async def test_razorpay_s_refusal_keeps_its_code_and_field(tenant: Tenant) -> None:
    with pytest.raises(PaykubeError) as refused:
        await tenant.provider.create_session(create_request(SPEC | {"amount": 50}),
                                             tenant.account)
    error = refused.value
    assert error.code is ErrorCode.PROVIDER_REJECTED
    assert (getattr(error, "provider_code", None), getattr(error, "param", None)) == (
        "BAD_REQUEST_ERROR", "amount")


async def test_identify_needs_the_declared_account(tenant: Tenant) -> None:
    undeclared = AccountCredentials(tenant.account.api_key)
    with pytest.raises(PaykubeError) as refused:
        await tenant.provider.identify(undeclared)
    assert refused.value.code is ErrorCode.CREDENTIALS_MISSING
    identity = await tenant.provider.identify(tenant.account)
    assert (identity.account_id, identity.livemode) == (tenant.account_id, False)
    assert [r.path for r in tenant.emulator.state.requests] == ["/v1/payment_links"]


def test_the_sdk_accepts_the_webhook_s_signatures_and_the_emulator_s() -> None:
    body = json.dumps({"event": "payment_link.paid", "payload": {}}).encode()
    secret = secrets.token_urlsafe(16)
    ours = compute_signature(body, secret)
    assert ours == sign_body(body, secret)
    assert razorpay.Utility(None).verify_webhook_signature(body.decode(), ours, secret)
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        razorpay.Utility(None).verify_webhook_signature(body.decode() + " ", ours, secret)
