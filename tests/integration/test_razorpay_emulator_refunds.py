"""The Razorpay emulator's refunds against the official `razorpay` SDK, on a real loopback
server: create, fetch and list, the receipt that makes a repeated create refused, Razorpay's
refusals, pending -> processed/failed by control, webhooks the SDK's utility verifies, and
injected faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import razorpay

from paykube_dev.razorpay_emulator import (
    AsyncRazorpayControl,
    EmulatorControlError,
    RazorpayEmulator,
)
from tests.integration.test_razorpay_emulator import KEY_A, SECRET, Receiver, link_params
from tests.plugins.razorpay_fixtures import razorpay_sdk

pytestmark = pytest.mark.integration

@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


NOTES = {"paykube_namespace": "shop", "paykube_name": "order-1-refund", "paykube_uid": "u-1"}


async def paid(emulator: RazorpayEmulator, control: AsyncRazorpayControl,
               key: tuple[str, str] = KEY_A) -> str:
    """A link created with the SDK and paid: its payment id."""
    client = razorpay_sdk(emulator.base_url, key)
    link = await asyncio.to_thread(client.payment_link.create, link_params())
    result = await control.transition(link["id"], "pay")
    payment_id = result["link"]["payments"][0]["payment_id"]
    assert isinstance(payment_id, str)
    return payment_id


async def sdk(emulator: RazorpayEmulator, call: str, *args: Any,
              key: tuple[str, str] = KEY_A) -> Any:
    """The sync SDK off the loop that serves the emulator: `call` is `payment.refund` etc."""
    client = razorpay_sdk(emulator.base_url, key)
    resource, method = call.split(".")
    return await asyncio.to_thread(getattr(getattr(client, resource), method), *args)


async def test_create_fetch_and_list_through_the_sdk(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
) -> None:
    emulator = async_razorpay_emulator
    payment_id = await paid(emulator, async_razorpay_control)
    refund = await sdk(emulator, "payment.refund", payment_id,
                       {"amount": 50000, "speed": "normal", "receipt": "u-1", "notes": NOTES})
    assert refund["id"].startswith("rfnd_")
    assert (refund["entity"], refund["status"], refund["amount"], refund["payment_id"]) == (
        "refund", "processed", 50000, payment_id)
    assert (refund["receipt"], refund["notes"], refund["currency"]) == ("u-1", NOTES, "INR")
    assert await sdk(emulator, "refund.fetch", refund["id"]) == refund
    listed = await sdk(emulator, "payment.fetch_multiple_refund", payment_id)
    assert listed == {"entity": "collection", "count": 1, "items": [refund]}
    payment = (await async_razorpay_control.events(event="refund.processed"))[0]
    entity = payment["body"]["payload"]["payment"]["entity"]
    assert (entity["amount_refunded"], entity["refund_status"], entity["status"]) == (
        50000, "partial", "captured")


async def test_a_repeated_receipt_partial_rest_and_too_much_are_refused_like_razorpay(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
) -> None:
    emulator = async_razorpay_emulator
    payment_id = await paid(emulator, async_razorpay_control)
    await sdk(emulator, "payment.refund", payment_id, {"amount": 40000, "receipt": "u-1"})
    with pytest.raises(razorpay.errors.BadRequestError, match="receipt u-1 already exists"):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 40000, "receipt": "u-1"})
    with pytest.raises(razorpay.errors.BadRequestError, match="greater than"):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 109901})
    rest = await sdk(emulator, "payment.refund", payment_id, {})
    assert rest["amount"] == 149900 - 40000
    with pytest.raises(razorpay.errors.BadRequestError, match="fully refunded"):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 100})
    for bad in ({"amount": 99}, {"speed": "warp"}, {"receipt": "r" * 41}, {"reason": "x"},
                {"notes": {f"k{i}": "v" for i in range(16)}}):
        with pytest.raises(razorpay.errors.BadRequestError):
            await sdk(emulator, "payment.refund", payment_id, bad)
    with pytest.raises(razorpay.errors.BadRequestError, match="does not exist"):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 100},
                  key=("rzp_test_someoneElse001", "s"))
    with pytest.raises(razorpay.errors.BadRequestError, match="does not exist"):
        await sdk(emulator, "payment.refund", "pay_" + "Z" * 14, {"amount": 100})
    assert len(emulator.state.refunds) == 2


async def test_pending_refunds_process_or_fail_with_signed_events(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
    receiver: Receiver,
) -> None:
    emulator, control = async_razorpay_emulator, async_razorpay_control
    payment_id = await paid(emulator, control)
    await control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0])
    await control.refund_mode("pending", payment_id)
    one = await sdk(emulator, "payment.refund", payment_id,
                    {"amount": 1000, "receipt": "u-1", "notes": NOTES})
    two = await sdk(emulator, "payment.refund", payment_id, {"amount": 2000})
    assert (one["status"], two["status"]) == ("pending", "pending")
    await control.refund_transition(one["id"], "processed")
    await control.refund_transition(two["id"], "failed")
    for refund_id, action in ((one["id"], "failed"), (two["id"], "processed"),
                              (one["id"], "explode")):
        with pytest.raises(EmulatorControlError) as refused:
            await control.refund_transition(refund_id, action)
        assert refused.value.status == 409
    async with asyncio.timeout(5):
        await receiver.wait_for(4)
    utility = razorpay.Client(auth=KEY_A).utility
    events = []
    for body, headers in receiver.calls:
        assert utility.verify_webhook_signature(body.decode(), headers["X-Razorpay-Signature"],
                                                SECRET)
        events.append(json.loads(body))
    assert [e["event"] for e in events] == ["refund.created", "refund.created",
                                            "refund.processed", "refund.failed"]
    assert all(e["contains"] == ["refund", "payment"] for e in events)
    refunds = [e["payload"]["refund"]["entity"] for e in events]
    assert [(r["id"], r["status"]) for r in refunds] == [
        (one["id"], "pending"), (two["id"], "pending"), (one["id"], "processed"),
        (two["id"], "failed")]
    assert refunds[2]["notes"] == NOTES
    # The failed refund's amount is refundable again.
    assert events[-1]["payload"]["payment"]["entity"]["amount_refunded"] == 1000
    assert (await sdk(emulator, "refund.fetch", two["id"]))["status"] == "failed"


async def test_a_dashboard_refund_has_no_notes_and_is_listed(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
) -> None:
    emulator, control = async_razorpay_emulator, async_razorpay_control
    payment_id = await paid(emulator, control)
    made = await control.dashboard_refund(payment_id, 500)
    assert (made["refund"]["notes"], made["refund"]["receipt"]) == ([], None)
    assert [e["body"]["event"] for e in made["events"]] == ["refund.created",
                                                            "refund.processed"]
    listed = await sdk(emulator, "payment.fetch_multiple_refund", payment_id)
    assert [r["id"] for r in listed["items"]] == [made["refund"]["id"]]
    with pytest.raises(EmulatorControlError) as unknown:
        await control.dashboard_refund("pay_" + "Z" * 14, 100)
    assert unknown.value.status == 404
    with pytest.raises(EmulatorControlError) as too_much:
        await control.dashboard_refund(payment_id, 149900)
    assert too_much.value.status == 409


async def test_faults_apply_to_refunds(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
) -> None:
    emulator, control = async_razorpay_emulator, async_razorpay_control
    payment_id = await paid(emulator, control)
    path = f"/v1/payments/{payment_id}/refund"
    await control.add_fault("rate_limit", method="POST", path=path)
    with pytest.raises(razorpay.errors.BadRequestError, match="Too many requests"):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 100})
    await control.add_fault("api_error", method="POST", path=path)
    with pytest.raises(razorpay.errors.ServerError):
        await sdk(emulator, "payment.refund", payment_id, {"amount": 100})
    assert emulator.state.refunds == {}
    await control.add_fault("api_error", method="GET", path=f"/v1/payments/{payment_id}/refunds")
    with pytest.raises(razorpay.errors.ServerError):
        await sdk(emulator, "payment.fetch_multiple_refund", payment_id)
    requests = await control.requests(path)
    assert [(r["status"], r["fault"]) for r in requests] == [(429, "rate_limit"),
                                                             (500, "api_error")]


async def test_x_refund_idempotency_gives_the_first_refund_back(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
) -> None:
    """Razorpay's documented header: the same key and body give the refund made the first
    time; another body with the key is refused; a malformed key is refused."""
    emulator = async_razorpay_emulator
    payment_id = await paid(emulator, async_razorpay_control)
    url = f"{emulator.base_url}/v1/payments/{payment_id}/refund"
    body = {"amount": 1000, "receipt": "u-1", "notes": NOTES}
    async with httpx.AsyncClient(auth=KEY_A) as http:
        async def create(key: str, payload: dict[str, Any]) -> httpx.Response:
            return await http.post(url, json=payload, headers={"X-Refund-Idempotency": key})

        first, again = await create("key-0001-abc", body), await create("key-0001-abc", body)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json() == first.json()
        other = await create("key-0001-abc", body | {"amount": 2000})
        assert other.status_code == 400
        assert other.json()["error"]["description"] == (
            "Different request with the same idempotency key has already been processed.")
        for bad in ("short", "has:colon:inside"):
            refused = await create(bad, body | {"receipt": "u-2"})
            assert refused.status_code == 400
            assert "idempotency key" in refused.json()["error"]["description"]
    assert list(emulator.state.refunds) == [first.json()["id"]]
    created = await async_razorpay_control.events(event="refund.created")
    assert len(created) == 1  # the replay sent no second event
