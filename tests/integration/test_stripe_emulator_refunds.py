"""The Stripe emulator's refunds against the official `stripe` SDK, on a real loopback
server: charges carrying the PaymentIntent's metadata, idempotent creates, partial and full
refunds, Stripe's refusals, status changes by control, signed webhooks, injected faults;
and the request and object shapes against stripe-mock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio
import stripe

from paykube_dev.services import StripeMock
from paykube_dev.stripe_emulator import AsyncEmulatorControl, EmulatorControlError, StripeEmulator
from tests.integration.test_stripe_emulator import SECRET, Receiver

pytestmark = pytest.mark.integration

KEY = "sk_test_refund_tests"
PAYKUBE = {"paykube_namespace": "shop", "paykube_name": "order-1", "paykube_uid": "uid-1"}


def session_params(**overrides: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "payment", "success_url": "https://shop.example/ok",
        "line_items": [{"price_data": {"currency": "eur", "unit_amount": 2500,
                                       "product_data": {"name": "Gift card"}},
                        "quantity": 1}],
        "expires_at": int(time.time()) + 3600, "metadata": dict(PAYKUBE),
        "payment_intent_data": {"metadata": dict(PAYKUBE)},
    }
    params.update(overrides)
    return params


def error_of(exc: stripe.StripeError) -> dict[str, Any]:
    body = cast(dict[str, Any], exc.json_body)
    return cast(dict[str, Any], body["error"])


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


@pytest.fixture
def client(async_stripe_emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": async_stripe_emulator.base_url},
                               max_network_retries=0)


async def paid_intent(client: stripe.StripeClient, control: AsyncEmulatorControl,
                      action: str = "paid", **overrides: Any) -> str:
    session = await client.v1.checkout.sessions.create_async(session_params(**overrides))
    result = await control.transition(session.id, cast(Any, action))
    intent = result["session"]["payment_intent"]
    assert isinstance(intent, str)
    return intent


async def refund(client: stripe.StripeClient, intent: str, amount: int | None = None,
                 key: str | None = None, **more: Any) -> stripe.Refund:
    params: dict[str, Any] = {"payment_intent": intent, **more}
    if amount is not None:
        params["amount"] = amount
    options: Any = {"idempotency_key": key} if key else None
    return await client.v1.refunds.create_async(cast(Any, params), options)


async def charge_of(client: stripe.StripeClient, intent: str) -> stripe.Charge:
    pi = await client.v1.payment_intents.retrieve_async(intent)
    assert isinstance(pi.latest_charge, str)
    return await client.v1.charges.retrieve_async(pi.latest_charge)


async def test_the_paid_intents_charge_carries_the_intents_metadata(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    pi = await client.v1.payment_intents.retrieve_async(intent)
    assert pi.metadata is not None
    assert pi.metadata.to_dict() == PAYKUBE
    charge = await charge_of(client, intent)
    assert charge.id.startswith("ch_")
    assert (charge.payment_intent, charge.amount, charge.amount_refunded, charge.refunded) == (
        intent, 2500, 0, False)
    assert charge.metadata.to_dict() == PAYKUBE


async def test_a_create_repeated_with_its_key_is_the_same_refund(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    async_stripe_emulator: StripeEmulator,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    first = await refund(client, intent, 1000, "paykube:uid-r:refund",
                         metadata={"paykube_uid": "uid-r"}, reason="requested_by_customer")
    again = await refund(client, intent, 1000, "paykube:uid-r:refund",
                         metadata={"paykube_uid": "uid-r"}, reason="requested_by_customer")
    assert again.id == first.id
    assert first.id.startswith("re_")
    assert (first.status, first.amount, first.currency, first.payment_intent) == (
        "succeeded", 1000, "eur", intent)
    assert first.reason == "requested_by_customer"
    assert first.to_dict()["metadata"] == {"paykube_uid": "uid-r"}
    assert len(async_stripe_emulator.state.refunds) == 1
    with pytest.raises(stripe.IdempotencyError) as other:
        await refund(client, intent, 1500, "paykube:uid-r:refund")
    assert error_of(other.value)["type"] == "idempotency_error"
    assert len(async_stripe_emulator.state.refunds) == 1
    assert (await charge_of(client, intent)).amount_refunded == 1000


async def test_partial_then_the_rest_then_nothing_is_left(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    await refund(client, intent, 1000)
    with pytest.raises(stripe.InvalidRequestError) as too_large:
        await refund(client, intent, 1501)
    error = error_of(too_large.value)
    assert (error["code"], error["param"]) == ("amount_too_large", "amount")
    assert error["doc_url"].endswith("/amount-too-large")
    rest = await refund(client, intent)  # no amount: what is left
    assert rest.amount == 1500
    charge = await charge_of(client, intent)
    assert (charge.amount_refunded, charge.refunded) == (2500, True)
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        await refund(client, intent, 1)
    assert error_of(nothing_left.value)["code"] == "charge_already_refunded"
    listed = await client.v1.refunds.list_async({"payment_intent": intent})
    assert sorted(r.amount for r in listed.data) == [1000, 1500]


async def test_only_a_succeeded_payment_of_this_account_is_refunded(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    async_stripe_emulator: StripeEmulator,
) -> None:
    processing = await paid_intent(client, async_stripe_control, "async_pending")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await refund(client, processing, 100)
    assert "does not have a successful charge" in error_of(refused.value)["message"]
    intent = await paid_intent(client, async_stripe_control)
    other = stripe.StripeClient("sk_test_someone_else",
                                base_addresses={"api": async_stripe_emulator.base_url},
                                max_network_retries=0)
    with pytest.raises(stripe.InvalidRequestError) as foreign:
        await refund(other, intent, 100)
    assert error_of(foreign.value)["code"] == "resource_missing"
    for bad, param in (({"amount": 0}, "amount"), ({"reason": "because"}, "reason"),
                       ({"colour": "red"}, "colour")):
        with pytest.raises(stripe.InvalidRequestError) as invalid:
            await refund(client, intent, **bad)
        assert error_of(invalid.value)["param"] == param
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async(cast(Any, {"amount": 100}))
    assert async_stripe_emulator.state.refunds == {}


async def test_lists_page_like_stripes_and_retrieve_is_per_account(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    async_stripe_emulator: StripeEmulator,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    other_intent = await paid_intent(client, async_stripe_control)
    made = [await refund(client, intent, 100) for _ in range(3)]
    await refund(client, other_intent, 100)
    first = await client.v1.refunds.list_async({"payment_intent": intent, "limit": 2})
    assert first.has_more
    assert [r.id for r in first.data] == [made[2].id, made[1].id]  # newest first
    second = await client.v1.refunds.list_async(
        {"payment_intent": intent, "limit": 2, "starting_after": first.data[-1].id})
    assert [r.id for r in second.data] == [made[0].id]
    assert not second.has_more
    assert (await client.v1.refunds.retrieve_async(made[0].id)).amount == 100
    other = stripe.StripeClient("sk_test_someone_else",
                                base_addresses={"api": async_stripe_emulator.base_url},
                                max_network_retries=0)
    with pytest.raises(stripe.InvalidRequestError) as foreign:
        await other.v1.refunds.retrieve_async(made[0].id)
    assert error_of(foreign.value)["code"] == "resource_missing"
    assert (await other.v1.refunds.list_async({"payment_intent": intent})).data == []


async def test_a_pending_refund_succeeds_then_the_bank_returns_it_with_signed_events(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    receiver: Receiver,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    await async_stripe_control.add_webhook_endpoint(receiver.url, SECRET)
    await async_stripe_control.refund_mode("pending", intent)
    pending = await refund(client, intent, 700, metadata={"paykube_uid": "uid-r"})
    assert pending.status == "pending"
    async with asyncio.timeout(5):
        await receiver.wait_for(2)
    succeeded = await async_stripe_control.refund_transition(pending.id, "succeeded")
    assert succeeded["refund"]["status"] == "succeeded"
    returned = await async_stripe_control.refund_transition(
        pending.id, "failed", failure_reason="expired_or_canceled_card")
    assert [e["type"] for e in returned["events"]] == ["refund.updated", "refund.failed"]
    async with asyncio.timeout(5):
        await receiver.wait_for(5)
    events = receiver.events()  # construct_event checks every signature
    assert [e.type for e in events] == ["refund.created", "charge.refunded", "refund.updated",
                                        "refund.updated", "refund.failed"]
    created, charged, updated, returned_update, failed = (e.data.object for e in events)
    assert (created["id"], created["status"], created["metadata"]["paykube_uid"]) == (
        pending.id, "pending", "uid-r")
    assert (charged["object"], charged["payment_intent"], charged["amount_refunded"]) == (
        "charge", intent, 700)
    assert charged["metadata"].to_dict() == PAYKUBE  # how charge.refunded finds its session
    assert updated["status"] == "succeeded"
    assert (failed["status"], failed["failure_reason"]) == ("failed", "expired_or_canceled_card")
    assert returned_update["status"] == "failed"
    # The returned money is refundable again, and no charge.refunded says it went down.
    assert (await charge_of(client, intent)).amount_refunded == 0
    again = await refund(client, intent)
    assert (again.status, again.amount) == ("pending", 2500)


async def test_pending_refunds_fail_or_need_action_and_impossible_moves_are_refused(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    await async_stripe_control.refund_mode("pending")  # every intent
    first = await refund(client, intent, 1000)
    failed = await async_stripe_control.refund_transition(first.id, "failed")
    assert (failed["refund"]["status"], failed["refund"]["failure_reason"]) == (
        "failed", "unknown")
    second = await refund(client, intent, 1000)
    needs = await async_stripe_control.refund_transition(second.id, "requires_action")
    assert needs["refund"]["status"] == "requires_action"
    assert "next_action" in needs["refund"]
    canceled = await async_stripe_control.refund_transition(second.id, "canceled")
    assert canceled["refund"]["status"] == "canceled"
    assert (await charge_of(client, intent)).amount_refunded == 0
    for refund_id, action in ((first.id, "succeeded"), (second.id, "failed"),
                              (first.id, "canceled"), (first.id, "explode")):
        with pytest.raises(EmulatorControlError) as refused:
            await async_stripe_control.refund_transition(refund_id, action)
        assert refused.value.status == 409
    with pytest.raises(EmulatorControlError) as unknown:
        await async_stripe_control.refund_transition("re_nothing", "succeeded")
    assert unknown.value.status == 404
    await async_stripe_control.refund_mode("succeeded")
    assert (await refund(client, intent, 10)).status == "succeeded"


async def test_a_dashboard_refund_has_no_metadata_and_its_charge_names_the_session(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    receiver: Receiver,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    await async_stripe_control.add_webhook_endpoint(receiver.url, SECRET)
    made = await async_stripe_control.dashboard_refund(intent, 400)
    assert (made["refund"]["metadata"], made["refund"]["amount"]) == ({}, 400)
    async with asyncio.timeout(5):
        await receiver.wait_for(2)
    created, charged = receiver.events()
    assert (created.type, charged.type) == ("refund.created", "charge.refunded")
    assert charged.data.object["metadata"].to_dict() == PAYKUBE
    assert charged.data.object["amount_refunded"] == 400
    listed = await client.v1.refunds.list_async({"payment_intent": intent})
    assert [r.id for r in listed.data] == [made["refund"]["id"]]
    rest = await async_stripe_control.dashboard_refund(intent)
    assert rest["refund"]["amount"] == 2100
    with pytest.raises(EmulatorControlError) as nothing_left:
        await async_stripe_control.dashboard_refund(intent, 1)
    assert nothing_left.value.status == 409


async def test_faults_apply_to_refunds_and_a_held_create_is_replayed_by_its_key(
    client: stripe.StripeClient, async_stripe_control: AsyncEmulatorControl,
    async_stripe_emulator: StripeEmulator,
) -> None:
    intent = await paid_intent(client, async_stripe_control)
    await async_stripe_control.add_fault("rate_limit", path="/v1/refunds", method="POST")
    with pytest.raises(stripe.RateLimitError):
        await refund(client, intent, 100, "k1")
    await async_stripe_control.add_fault("api_error", path="/v1/refunds", method="POST")
    with pytest.raises(stripe.APIError):
        await refund(client, intent, 100, "k1")
    assert async_stripe_emulator.state.refunds == {}  # refused before anything happened
    await async_stripe_control.add_fault("api_error", path="/v1/refunds", method="GET")
    with pytest.raises(stripe.APIError):
        await client.v1.refunds.list_async({"payment_intent": intent})
    # A held answer: the refund exists, the caller never hears; its retry gets it back.
    await async_stripe_control.add_fault("hold", path="/v1/refunds", method="POST",
                                         seconds=0.3)
    timed_out = stripe.StripeClient(
        KEY, base_addresses={"api": async_stripe_emulator.base_url}, max_network_retries=0,
        http_client=stripe.HTTPXClient(timeout=0.1))
    with pytest.raises(stripe.APIConnectionError):
        await refund(timed_out, intent, 100, "k1")
    assert len(async_stripe_emulator.state.refunds) == 1
    again = await refund(client, intent, 100, "k1")
    assert list(async_stripe_emulator.state.refunds) == [again.id]
    requests = await async_stripe_control.requests("/v1/refunds", method="POST")
    assert [r["fault"] for r in requests] == ["rate_limit", "api_error", "hold", None]
    assert requests[-1]["replayed"] is True


def test_refund_and_charge_shapes_match_stripe_mock(stripe_mock: StripeMock) -> None:
    """stripe-mock checks the create against Stripe's OpenAPI spec and answers with its
    fixtures: the emulator's refund and charge carry only fields Stripe's have."""
    mock = stripe.StripeClient(stripe_mock.api_key, base_addresses={"api": stripe_mock.url},
                               max_network_retries=0)
    params: Any = {"payment_intent": "pi_123", "amount": 100, "reason": "duplicate",
                   "metadata": PAYKUBE}
    mock_refund = mock.v1.refunds.create(params, {"idempotency_key": "k"}).to_dict()
    mock_charge = mock.v1.charges.retrieve("ch_123").to_dict()
    mock.v1.refunds.list({"payment_intent": "pi_123", "limit": 100})
    mock.v1.refunds.retrieve("re_123")

    async def ours() -> tuple[dict[str, Any], dict[str, Any]]:
        async with StripeEmulator() as emulator, AsyncEmulatorControl(
                emulator.base_url) as control:
            client = stripe.StripeClient(KEY, base_addresses={"api": emulator.base_url},
                                         max_network_retries=0)
            intent = await paid_intent(client, control)
            await control.refund_mode("pending")
            made = await refund(client, intent, 100, "k", reason="duplicate",
                                metadata=PAYKUBE)
            await control.refund_transition(made.id, "failed")
            failed = (await client.v1.refunds.retrieve_async(made.id)).to_dict()
            return failed, (await charge_of(client, intent)).to_dict()

    refund_body, charge_body = asyncio.run(ours())
    # failure_reason is sent on failed refunds only, which stripe-mock's fixture is not.
    assert set(refund_body) <= set(mock_refund) | {"failure_reason"}
    assert set(charge_body) <= set(mock_charge)
