"""The Razorpay emulator against the official `razorpay` SDK, on a real loopback server.

Sync tests use the session-wide emulator thread (`razorpay_emulator`); webhook tests run the
emulator and a recording receiver in the test's own loop (`async_razorpay_emulator`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import razorpay
import requests
from aiohttp import web

from paykube_dev.razorpay_emulator import (
    AsyncRazorpayControl,
    EmulatorControlError,
    RazorpayConfig,
    RazorpayControl,
    RazorpayEmulator,
    RazorpayEmulatorProcess,
    RazorpayEmulatorThread,
    account_id_for_key,
    sign_body,
)
from tests.plugins.razorpay_fixtures import razorpay_sdk

pytestmark = pytest.mark.integration

SECRET = "razorpay_webhook_secret_for_tests"
Key = tuple[str, str]


def link_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 149900, "currency": "INR", "description": "Annual plan",
        "reference_id": "3f1c7a52-7d0e-4d52-9a57-0f1f7b1c2d3e",
        "expire_by": int(time.time()) + 3600,
        "notes": {"paykube_namespace": "shop", "paykube_name": "order-1"},
        "customer": {"name": "Gaurav Kumar", "email": "gaurav@example.com",
                     "contact": "+919000090000"},
        "notify": {"sms": False, "email": False},
        "callback_url": "https://shop.example/ok", "callback_method": "get",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def raw_error(base_url: str, key: Key, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = httpx.post(f"{base_url}{path}", json=body, auth=key)
    return response.status_code, response.json()["error"]


# --- the API through the SDK ----------------------------------------------------------


def test_sdk_creates_fetches_and_finds_links(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    params = link_params()
    link = razorpay_client.payment_link.create(params)
    assert re.fullmatch(r"plink_[A-Za-z0-9]{14}", link["id"])
    assert (link["status"], link["amount"], link["amount_paid"], link["currency"]) == (
        "created", 149900, 0, "INR")
    assert link["reference_id"] == params["reference_id"]
    assert link["expire_by"] == params["expire_by"]
    assert link["notes"] == params["notes"]
    assert link["customer"] == params["customer"]
    assert (link["callback_url"], link["callback_method"]) == ("https://shop.example/ok", "get")
    assert link["short_url"].startswith("https://rzp.io/i/")
    assert abs(link["created_at"] - time.time()) < 5
    assert razorpay_client.payment_link.fetch(link["id"]) == link
    found = razorpay_client.payment_link.all({"reference_id": params["reference_id"]})
    assert found == {"payment_links": [link]}
    assert razorpay_client.payment_link.all({"reference_id": "nothing"}) == {"payment_links": []}
    assert razorpay_control.links_created() == 1


def test_a_second_create_with_the_same_reference_id_is_refused(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_client: razorpay.Client,
    razorpay_control: RazorpayControl, razorpay_key: Key,
) -> None:
    """Razorpay has no idempotency key: the refusal, then a find by reference, is how a
    create whose answer was lost ends with exactly one link."""
    first = razorpay_client.payment_link.create(link_params())
    with pytest.raises(razorpay.errors.BadRequestError, match="already exists"):
        razorpay_client.payment_link.create(link_params(amount=100))
    status, error = raw_error(razorpay_emulator.base_url, razorpay_key, "/v1/payment_links",
                              link_params())
    assert status == 400
    assert error == {
        "code": "BAD_REQUEST_ERROR",
        "description": f"Payment Link with reference id {link_params()['reference_id']} "
                       "already exists",
        "field": "reference_id", "source": "business", "step": "payment_initiation",
        "reason": "input_validation_failed", "metadata": {},
    }
    (found,) = razorpay_client.payment_link.all(
        {"reference_id": link_params()["reference_id"]})["payment_links"]
    assert found["id"] == first["id"]
    assert razorpay_control.links_created() == 1
    other = razorpay_sdk(razorpay_emulator.base_url, ("rzp_test_otherAccount01", "s"))
    assert other.payment_link.create(link_params())["reference_id"] == first["reference_id"], \
        "reference ids are unique per account, not across accounts"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": None}, "amount"),
        ({"amount": 99}, "amount"),
        ({"currency": "inr"}, "currency"),
        ({"notes": {f"k{i}": "v" for i in range(16)}}, "notes"),
        ({"notes": {"long": "x" * 257}}, "notes.long"),
        ({"callback_method": None}, "callback_method"),
        ({"callback_url": None}, "callback_url"),
        ({"expire_by": int(time.time()) + 60}, "expire_by"),
        ({"expire_by": int(time.time()) + 200 * 24 * 3600}, "expire_by"),
        ({"reference_id": "r" * 41}, "reference_id"),
        ({"customer": {"email": "nobody"}}, "customer.email"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_links_are_refused_like_razorpay(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_client: razorpay.Client,
    razorpay_control: RazorpayControl, razorpay_key: Key,
    overrides: dict[str, Any], field: str,
) -> None:
    params = link_params(**overrides)  # a None override leaves the field out
    with pytest.raises(razorpay.errors.BadRequestError):
        razorpay_client.payment_link.create(params)
    status, error = raw_error(razorpay_emulator.base_url, razorpay_key, "/v1/payment_links",
                              params)
    assert (status, error["code"], error["field"]) == (400, "BAD_REQUEST_ERROR", field)
    assert razorpay_control.links_created() == 0


def test_an_unknown_or_foreign_link_does_not_exist(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_client: razorpay.Client,
) -> None:
    link = razorpay_client.payment_link.create(link_params())
    other = razorpay_sdk(razorpay_emulator.base_url, ("rzp_test_tenantB000001", "b-secret"))
    for client, link_id in ((razorpay_client, "plink_00000000000000"), (other, link["id"])):
        with pytest.raises(razorpay.errors.BadRequestError,
                           match="The id provided does not exist"):
            client.payment_link.fetch(link_id)
        with pytest.raises(razorpay.errors.BadRequestError):
            client.payment_link.cancel(link_id)
    assert other.payment_link.all({"reference_id": link["reference_id"]}) == {
        "payment_links": []}
    assert razorpay_client.payment_link.fetch(link["id"])["status"] == "created"


def test_cancel_works_only_while_created(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    created = razorpay_client.payment_link.create(link_params(reference_id="a"))
    cancelled = razorpay_client.payment_link.cancel(created["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] > 0
    partial = razorpay_client.payment_link.create(
        link_params(reference_id="b", accept_partial=True, first_min_partial_amount=50000))
    razorpay_control.part_pay(partial["id"], 60000)
    paid = razorpay_client.payment_link.create(link_params(reference_id="c"))
    razorpay_control.pay(paid["id"])
    expired = razorpay_client.payment_link.create(link_params(reference_id="d"))
    razorpay_control.expire(expired["id"])
    for link_id, state in ((created["id"], "cancelled"), (partial["id"], "partially_paid"),
                           (paid["id"], "paid"), (expired["id"], "expired")):
        with pytest.raises(razorpay.errors.BadRequestError) as caught:
            razorpay_client.payment_link.cancel(link_id)
        assert str(caught.value) == (
            f"Payment Link cannot be cancelled as it is in {state} state")
        assert razorpay_client.payment_link.fetch(link_id)["status"] == state
    assert [e["body"]["event"] for e in razorpay_control.events(created["id"])] == [
        "payment_link.cancelled"]


def test_partial_payments_then_the_rest(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    link = razorpay_client.payment_link.create(
        link_params(accept_partial=True, first_min_partial_amount=40000))
    with pytest.raises(EmulatorControlError, match="at least 40000"):
        razorpay_control.part_pay(link["id"], 100)
    razorpay_control.part_pay(link["id"], 49900)
    now = razorpay_client.payment_link.fetch(link["id"])
    assert (now["status"], now["amount_paid"]) == ("partially_paid", 49900)
    result = razorpay_control.pay(link["id"])
    assert result["link"]["status"] == "paid"
    final = razorpay_client.payment_link.fetch(link["id"])
    assert (final["status"], final["amount_paid"]) == ("paid", 149900)
    assert [p["amount"] for p in final["payments"]] == [49900, 100000]
    events = razorpay_control.events(link["id"])
    assert [e["body"]["event"] for e in events] == [
        "payment_link.partially_paid", "payment_link.paid"]
    whole = razorpay_client.payment_link.create(link_params(reference_id="whole"))
    with pytest.raises(EmulatorControlError) as caught:
        razorpay_control.part_pay(whole["id"], 100)
    assert caught.value.status == 409


def test_links_expire_by_themselves_at_expire_by(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    soon = razorpay_client.payment_link.create(
        link_params(reference_id="soon", expire_by=int(time.time()) + 1200))
    later = razorpay_client.payment_link.create(link_params(reference_id="later"))
    assert razorpay_control.advance_clock(1800)["expired"] == [soon["id"]]
    expired = razorpay_client.payment_link.fetch(soon["id"])
    assert expired["status"] == "expired" and expired["expired_at"] > 0
    assert razorpay_client.payment_link.fetch(later["id"])["status"] == "created"
    (event,) = razorpay_control.events(soon["id"])
    assert event["body"]["event"] == "payment_link.expired"
    assert event["body"]["contains"] == ["payment_link"]


# --- keys and accounts ------------------------------------------------------------------------


def test_basic_auth_keys_and_accounts(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_control: RazorpayControl,
) -> None:
    base = razorpay_emulator.base_url
    old, new = ("rzp_test_rotationOld001", "old-secret"), ("rzp_test_rotationNew002", "new")
    account = razorpay_control.create_account({old[0]: old[1]}, account_id="acc_TenantA0000001")
    assert account["key_ids"] == [old[0]]
    razorpay_control.add_key("acc_TenantA0000001", *new)
    link = razorpay_sdk(base, old).payment_link.create(link_params())
    assert razorpay_sdk(base, new).payment_link.fetch(link["id"])["id"] == link["id"]
    razorpay_control.revoke_key(old[0])
    answers = {
        "revoked": httpx.get(f"{base}/v1/payment_links", auth=old),
        "wrong secret": httpx.get(f"{base}/v1/payment_links", auth=(new[0], "guess")),
        "no auth": httpx.get(f"{base}/v1/payment_links"),
    }
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 401)
    assert [r.json()["error"]["description"] for r in answers.values()] == [
        "The api key provided is invalid", "Authentication failed",
        "Please provide your api key for authentication purposes."]
    assert {r["account_id"] for r in razorpay_control.requests(key_id=new[0])} == {
        "acc_TenantA0000001"}
    auto = ("rzp_test_autoAccount0001", "first-secret")
    razorpay_sdk(base, auto).payment_link.all()
    registered = razorpay_control.account_for_key(auto[0])
    assert registered is not None
    assert (registered["id"], registered["key_ids"], registered["auto"]) == (
        account_id_for_key(auto[0]), [auto[0]], True)
    with pytest.raises(EmulatorControlError) as taken:
        razorpay_control.create_account({auto[0]: "x"})
    assert taken.value.status == 409


def test_request_log_keeps_the_raw_path(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_control: RazorpayControl,
    razorpay_key: Key,
) -> None:
    response = httpx.post(
        f"{razorpay_emulator.base_url}/v1/payment_links/..%2Fpayments%3Fx%3D/cancel",
        auth=razorpay_key)
    assert response.status_code == 400
    (record,) = razorpay_control.requests(account_id=account_id_for_key(razorpay_key[0]))
    assert record["raw_path"] == "/v1/payment_links/..%2Fpayments%3Fx%3D/cancel"
    assert (record["method"], record["key_id"], record["status"]) == (
        "POST", razorpay_key[0], 400)


# --- faults --------------------------------------------------------------------------------


def test_injected_429_and_500_create_nothing(
    razorpay_emulator: RazorpayEmulatorThread, razorpay_client: razorpay.Client,
    razorpay_control: RazorpayControl, razorpay_key: Key,
) -> None:
    razorpay_control.add_fault("rate_limit", count=1, method="POST", retry_after=2)
    response = httpx.post(f"{razorpay_emulator.base_url}/v1/payment_links",
                          json=link_params(), auth=razorpay_key)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
    assert response.json()["error"]["code"] == "BAD_REQUEST_ERROR"
    razorpay_control.add_fault("api_error", count=1, method="POST")
    with pytest.raises(razorpay.errors.ServerError):
        razorpay_client.payment_link.create(link_params())
    razorpay_control.add_fault("razorpay_error", count=1, method="GET", error={
        "status": 400, "code": "GATEWAY_ERROR", "message": "gateway down", "param": "id"})
    with pytest.raises(razorpay.errors.GatewayError, match="gateway down"):
        razorpay_client.payment_link.all()
    assert razorpay_control.links_created() == 0
    assert razorpay_control.faults() == []
    razorpay_client.payment_link.create(link_params())
    assert [r["status"] for r in razorpay_control.requests(path="/v1/payment_links")] == [
        429, 500, 400, 200]


def test_a_held_create_exists_before_its_answer(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    razorpay_control.add_fault("hold", method="POST", path="/v1/payment_links")
    params = link_params()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(razorpay_client.payment_link.create, params)
        (held,) = razorpay_control.wait_for_held(1)
        assert not pending.done()
        with pytest.raises(razorpay.errors.BadRequestError, match="already exists"):
            razorpay_client.payment_link.create(params)
        (found,) = razorpay_client.payment_link.all(
            {"reference_id": params["reference_id"]})["payment_links"]
        assert found["id"] == held["object_id"]
        assert razorpay_control.release() == 1
        assert pending.result(timeout=10)["id"] == found["id"]
    assert razorpay_control.links_created() == 1


def create_exactly_once(client: razorpay.Client, params: dict[str, Any]) -> dict[str, Any]:
    """Create, and after any failure look the link up by reference before trying again:
    the crash-safe create Razorpay's API allows (there is no idempotency key)."""
    for _ in range(50):
        try:
            created: dict[str, Any] = client.payment_link.create(params)
            return created
        except (razorpay.errors.BadRequestError, razorpay.errors.ServerError,
                requests.exceptions.ConnectionError, ValueError):
            pass
        try:
            found = client.payment_link.all({"reference_id": params["reference_id"]})
        except (razorpay.errors.BadRequestError, razorpay.errors.ServerError,
                requests.exceptions.ConnectionError, ValueError):
            continue
        if found["payment_links"]:
            link: dict[str, Any] = found["payment_links"][0]
            return link
    raise AssertionError(f"no link for {params['reference_id']} after 50 attempts")


def test_creates_converge_to_one_link_each_under_random_faults(
    razorpay_client: razorpay.Client, razorpay_control: RazorpayControl,
) -> None:
    razorpay_control.add_fault("rate_limit", count=None, probability=0.2)
    razorpay_control.add_fault("api_error", count=None, probability=0.15)  # of the rest
    razorpay_control.add_fault("drop", count=None, method="POST", probability=0.2)
    razorpay_control.add_fault("garbage", count=None, method="POST", probability=0.2)
    references = [f"order-{i}" for i in range(20)]
    links = [create_exactly_once(razorpay_client, link_params(reference_id=r))
             for r in references]
    razorpay_control.clear_faults()
    assert [link["reference_id"] for link in links] == references
    stats = razorpay_control.stats()
    assert stats["links_by_reference_id"] == dict.fromkeys(references, 1)
    faults = {r["fault"] for r in razorpay_control.requests() if r["fault"]}
    assert faults == {"rate_limit", "api_error", "drop", "garbage"}


def test_module_entry_point_serves_and_prints_its_url(tmp_path: Path) -> None:
    log = tmp_path / "razorpay-emulator.log"
    with RazorpayEmulatorProcess(log) as process, RazorpayControl(process.base_url) as control:
        assert control.health() == {"ok": True, "psp": "razorpay"}
        key = ("rzp_test_processKey0001", "secret")
        control.add_webhook("http://127.0.0.1:9/hook", SECRET, key_id=key[0])
        link = razorpay_sdk(process.base_url, key).payment_link.create(link_params())
        result = control.pay(link["id"])
        assert result["deliveries"][0]["error"], "nothing listens on port 9"
    assert process.base_url in log.read_text().splitlines()


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
        app.router.add_post("/webhooks/razorpay", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/webhooks/razorpay"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


KEY_A: Key = ("rzp_test_tenantA000001", "secret-a")
KEY_B: Key = ("rzp_test_tenantB000002", "secret-b")


async def create_async(emulator: RazorpayEmulator, key: Key, **overrides: Any) -> Any:
    """The sync SDK off the loop that serves the emulator."""
    client = razorpay_sdk(emulator.base_url, key)
    return await asyncio.to_thread(client.payment_link.create, link_params(**overrides))


async def test_webhooks_are_signed_so_the_sdk_verifies_them(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
    receiver: Receiver,
) -> None:
    control = async_razorpay_control
    await control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0])
    link = await create_async(async_razorpay_emulator, KEY_A)
    result = await control.transition(link["id"], "pay")
    assert [d["status"] for d in result["deliveries"]] == [200]
    ((body, headers),) = receiver.calls
    utility = razorpay.Client(auth=KEY_A).utility
    assert utility.verify_webhook_signature(body.decode(), headers["X-Razorpay-Signature"],
                                            SECRET)
    assert headers["X-Razorpay-Signature"] == sign_body(body, SECRET)
    changed = body.replace(b'"paid"', b'"pain"', 1)
    assert changed != body
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        utility.verify_webhook_signature(changed.decode(), headers["X-Razorpay-Signature"],
                                         SECRET)
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        utility.verify_webhook_signature(body.decode(), headers["X-Razorpay-Signature"],
                                         "another_secret")
    event = json.loads(body)
    assert event["entity"] == "event" and event["event"] == "payment_link.paid"
    assert event["account_id"] == account_id_for_key(KEY_A[0])
    assert event["contains"] == ["payment_link", "order", "payment"]
    plink = event["payload"]["payment_link"]["entity"]
    assert (plink["id"], plink["status"], plink["amount_paid"]) == (link["id"], "paid", 149900)
    order = event["payload"]["order"]["entity"]
    payment = event["payload"]["payment"]["entity"]
    assert (order["id"], order["status"], order["amount_paid"]) == (
        plink["order_id"], "paid", 149900)
    assert (payment["entity"], payment["status"], payment["amount"], payment["order_id"]) == (
        "payment", "captured", 149900, order["id"])
    assert re.fullmatch(r"pay_[A-Za-z0-9]{14}", payment["id"])
    assert abs(event["created_at"] - time.time()) < 5
    assert headers["X-Razorpay-Event-Id"] == result["event"]["id"]


async def test_each_account_hears_only_its_own_links(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
    receiver: Receiver,
) -> None:
    other = Receiver()
    await other.start()
    try:
        control = async_razorpay_control
        await control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0],
                                  events=["payment_link.paid", "payment_link.cancelled"])
        await control.add_webhook(other.url, "secret_of_b", key_id=KEY_B[0])
        mine = await create_async(async_razorpay_emulator, KEY_A)
        second = await create_async(async_razorpay_emulator, KEY_A, reference_id="two",
                                    accept_partial=True)
        theirs = await create_async(async_razorpay_emulator, KEY_B)
        await control.transition(second["id"], "part_pay", amount=1000)  # not subscribed
        await control.transition(mine["id"], "cancel")
        await control.transition(theirs["id"], "pay")
        assert [json.loads(b)["event"] for b, _ in receiver.calls] == ["payment_link.cancelled"]
        assert [json.loads(b)["payload"]["payment_link"]["entity"]["id"]
                for b, _ in other.calls] == [theirs["id"]]
        assert other.calls[0][1]["X-Razorpay-Signature"] == sign_body(other.calls[0][0],
                                                                      "secret_of_b")
    finally:
        await other.stop()


async def test_failed_delivery_is_retried_and_redelivery_keeps_the_event_id(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
    receiver: Receiver,
) -> None:
    control = async_razorpay_control
    hook = await control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0],
                                     retry_delays=[0.1])
    receiver.statuses = [503]
    link = await create_async(async_razorpay_emulator, KEY_A)
    result = await control.transition(link["id"], "expire")
    assert [d["status"] for d in result["deliveries"]] == [503]
    async with asyncio.timeout(5):
        await receiver.wait_for(2)
    await control.deliver(result["event"]["id"], endpoint_id=hook["id"])
    await control.deliver(result["event"]["id"], url=receiver.url, secret="not_the_secret")
    bodies = {body for body, _ in receiver.calls}
    ids = {headers["X-Razorpay-Event-Id"] for _, headers in receiver.calls}
    assert (len(receiver.calls), len(bodies), ids) == (4, 1, {result["event"]["id"]})
    signatures = [headers["X-Razorpay-Signature"] for _, headers in receiver.calls]
    assert signatures[:3] == [sign_body(next(iter(bodies)), SECRET)] * 3
    assert signatures[3] != signatures[0]
    deliveries = await control.deliveries(result["event"]["id"])
    assert [(d["attempt"], d["status"]) for d in deliveries] == [
        (1, 503), (2, 200), (3, 200), (1, 200)]


async def test_api_cancel_announces_the_link_in_the_background(
    async_razorpay_emulator: RazorpayEmulator, async_razorpay_control: AsyncRazorpayControl,
    receiver: Receiver,
) -> None:
    await async_razorpay_control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0])
    link = await create_async(async_razorpay_emulator, KEY_A)
    client = razorpay_sdk(async_razorpay_emulator.base_url, KEY_A)
    cancelled = await asyncio.to_thread(client.payment_link.cancel, link["id"])
    assert cancelled["status"] == "cancelled"
    async with asyncio.timeout(5):
        await receiver.wait_for(1)
    event = json.loads(receiver.calls[0][0])
    assert event["event"] == "payment_link.cancelled"
    assert event["payload"]["payment_link"]["entity"]["status"] == "cancelled"


async def test_hosted_page_pays_and_returns_with_a_signature_the_sdk_verifies(
    receiver: Receiver,
) -> None:
    async with RazorpayEmulator(RazorpayConfig(hosted_links=True)) as emulator, \
            AsyncRazorpayControl(emulator.base_url) as control, \
            httpx.AsyncClient(follow_redirects=False) as http:
        await control.add_webhook(receiver.url, SECRET, key_id=KEY_A[0])
        link = await create_async(emulator, KEY_A, callback_url="https://shop.example/ok?o=1")
        assert link["short_url"].startswith(f"{emulator.base_url}/i/")
        page = await http.get(link["short_url"])
        assert page.status_code == 200 and "1,499.00 INR" in page.text
        paid = await http.post(f"{link['short_url']}/pay")
        assert paid.status_code == 303
        location = httpx.URL(paid.headers["Location"])
        assert (location.host, location.params["o"]) == ("shop.example", "1")
        query = dict(location.params)
        assert (query["razorpay_payment_link_id"], query["razorpay_payment_link_status"]) == (
            link["id"], "paid")
        utility = razorpay.Client(auth=KEY_A).utility
        assert utility.verify_payment_link_signature({**query, "payment_link_id": link["id"],
                                                      "payment_link_reference_id": link[
                                                          "reference_id"],
                                                      "payment_link_status": "paid"})
        forged = {**query, "payment_link_id": link["id"], "payment_link_status": "paid",
                  "payment_link_reference_id": "another-order"}
        with pytest.raises(razorpay.errors.SignatureVerificationError):
            utility.verify_payment_link_signature(forged)
        async with asyncio.timeout(5):
            await receiver.wait_for(1)
        assert json.loads(receiver.calls[0][0])["event"] == "payment_link.paid"
        again = await http.post(f"{link['short_url']}/pay")
        assert again.status_code == 409
