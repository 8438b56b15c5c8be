"""Stripe refund and charge mapping and the refund create's parameters (pure parts of the
Stripe adapter)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paykube.api.types import ObjectRef, RefundPhase
from paykube.errors import ErrorCode
from paykube.providers.base import CreateRefund, ProviderPayloadInvalid
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.stripe import (
    REFUND_EVENTS,
    SUBSCRIBED_EVENTS,
    StripeProvider,
    charge_refunded_facts,
    refund_params,
    refund_phase,
    refund_snapshot,
)
from paykube.settings import SecretStr

REFUND_REF = ObjectRef("shop", "order-1-shipping", "7f0c-refund-uid")
SESSION_REF = ObjectRef("shop", "order-1", "0b7d-session-uid")


def stripe_refund(**changes: Any) -> dict[str, Any]:
    refund: dict[str, Any] = {
        "id": "re_3MtwBwLkdIwHu7ix28a3tqPa", "object": "refund", "amount": 500,
        "charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa", "created": 1_700_000_000,
        "currency": "eur", "metadata": {"paykube_uid": REFUND_REF.uid, "ticket": "SUP-1"},
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "reason": "requested_by_customer",
        "status": "succeeded",
    }
    refund.update(changes)
    return refund


def stripe_charge(**changes: Any) -> dict[str, Any]:
    charge: dict[str, Any] = {
        "id": "ch_3MtwBwLkdIwHu7ix28a3tqPa", "object": "charge", "amount": 2500,
        "amount_refunded": 500, "currency": "eur", "livemode": False, "refunded": False,
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "metadata": {"paykube_namespace": "shop", "paykube_name": "order-1",
                     "paykube_uid": SESSION_REF.uid, "order": "1002"},
    }
    charge.update(changes)
    return charge


@pytest.mark.parametrize(("status", "phase"), [
    ("pending", RefundPhase.PENDING), ("requires_action", RefundPhase.REQUIRES_ACTION),
    ("succeeded", RefundPhase.SUCCEEDED), ("failed", RefundPhase.FAILED),
    ("canceled", RefundPhase.CANCELED),
])
def test_every_stripe_refund_status_has_its_phase(status: str, phase: RefundPhase) -> None:
    assert refund_phase({"status": status}) is phase


@pytest.mark.parametrize("status", [None, "", "refunded", "SUCCEEDED", 1, ["succeeded"]])
def test_an_unknown_refund_status_is_refused(status: object) -> None:
    with pytest.raises(ProviderPayloadInvalid) as refused:
        refund_phase({"status": status})
    assert refused.value.code is ErrorCode.PAYLOAD_INVALID
    assert not refused.value.retryable


def test_a_refund_snapshot_keeps_the_facts_paykube_needs() -> None:
    snap = refund_snapshot(stripe_refund(status="failed", failure_reason="declined"))
    assert snap.refund_id == "re_3MtwBwLkdIwHu7ix28a3tqPa"
    assert (snap.phase, snap.amount, snap.currency) == (RefundPhase.FAILED, 500, "eur")
    assert snap.payment_id == "pi_3MtwBwLkdIwHu7ix28a3tqPa"
    assert (snap.provider_status, snap.failure_reason) == ("failed", "declined")
    assert snap.refund_uid == REFUND_REF.uid
    assert snap.livemode is None  # a refund object does not say; its event does


def test_a_refund_snapshot_reads_pyr_ids_expanded_intents_and_no_metadata() -> None:
    snap = refund_snapshot(stripe_refund(id="pyr_1Abc", metadata={},
                                         payment_intent={"id": "pi_1Abc", "object": "x"}))
    assert (snap.refund_id, snap.payment_id, snap.refund_uid) == ("pyr_1Abc", "pi_1Abc", None)
    assert refund_snapshot(stripe_refund(payment_intent=None, metadata=None)).payment_id is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": None}, "refund id"), ({"id": "ch_1Abc"}, "refund id"),
    ({"id": "re_1/../x"}, "refund id"), ({"amount": None}, "amount"),
    ({"amount": "500"}, "amount"), ({"amount": -1}, "amount"), ({"amount": True}, "amount"),
    ({"amount": 2**63}, "amount"), ({"payment_intent": "ch_1"}, "payment_intent"),
    ({"payment_intent": {"id": 5}}, "payment_intent.id"), ({"currency": 9}, "currency"),
    ({"metadata": ["x"]}, "metadata"), ({"metadata": {"paykube_uid": 7}},
                                        "metadata.paykube_uid"),
    ({"failure_reason": "x" * 256}, "failure_reason"), ({"status": "done"}, "refund status"),
    ({"livemode": "no"}, "livemode"),
])
def test_a_refund_stripe_would_not_send_is_refused_by_field(changes: dict[str, Any],
                                                            field: str) -> None:
    with pytest.raises(ProviderPayloadInvalid) as refused:
        refund_snapshot(stripe_refund(**changes))
    assert refused.value.param == field


def test_a_refund_that_is_not_an_object_is_refused() -> None:
    bodies: tuple[object, ...] = (None, [], "re_1")
    for body in bodies:
        with pytest.raises(ProviderPayloadInvalid):
            refund_snapshot(body)  # type: ignore[arg-type]  # what a broken PSP sends


@given(st.dictionaries(st.sampled_from(["id", "amount", "status", "payment_intent",
                                        "metadata", "currency", "failure_reason"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=20),
                                 st.booleans(), st.lists(st.integers(), max_size=2),
                                 st.dictionaries(st.text(max_size=5), st.integers(),
                                                 max_size=2))))
def test_any_refund_body_is_read_or_refused_as_invalid(body: dict[str, Any]) -> None:
    """Never another exception: a strange body is the PSP's fault, reported as such."""
    try:
        snap = refund_snapshot(body)
    except ProviderPayloadInvalid:
        return
    assert snap.refund_id.startswith(("re_", "pyr_"))
    assert snap.amount >= 0


def test_refund_params_put_the_object_and_session_in_the_metadata() -> None:
    request = CreateRefund(REFUND_REF, SESSION_REF, "pi_1Abc", 500, "eur",
                           "requested_by_customer",
                           {"ticket": "SUP-1", "paykube_uid": "forged", "paykube_x": "y"})
    assert refund_params(request) == {
        "payment_intent": "pi_1Abc", "amount": 500, "reason": "requested_by_customer",
        "metadata": {"ticket": "SUP-1", "paykube_namespace": "shop",
                     "paykube_name": "order-1-shipping", "paykube_uid": REFUND_REF.uid,
                     "paykube_session": "order-1"},
    }
    assert request.idempotency_key == f"paykube:{REFUND_REF.uid}:refund"
    bare = refund_params(CreateRefund(REFUND_REF, SESSION_REF, "pi_1Abc", 1, "eur"))
    assert "reason" not in bare
    assert set(bare["metadata"]) == {"paykube_namespace", "paykube_name", "paykube_uid",
                                     "paykube_session"}


def test_charge_refunded_facts_name_the_session_by_its_metadata() -> None:
    facts = charge_refunded_facts(stripe_charge())
    assert (facts.charge_id, facts.payment_intent_id) == (
        "ch_3MtwBwLkdIwHu7ix28a3tqPa", "pi_3MtwBwLkdIwHu7ix28a3tqPa")
    assert (facts.amount, facts.amount_refunded, facts.refunded) == (2500, 500, False)
    assert (facts.currency, facts.livemode) == ("eur", False)
    assert facts.metadata == {"paykube_namespace": "shop", "paykube_name": "order-1",
                              "paykube_uid": SESSION_REF.uid}  # the user's keys left out
    full = charge_refunded_facts(stripe_charge(amount_refunded=2500, refunded=True,
                                               metadata={}))
    assert (full.refunded, full.metadata) == (True, {})
    assert charge_refunded_facts(stripe_charge(id="py_1Abc")).charge_id == "py_1Abc"


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": "re_1Abc"}, "charge id"), ({"id": None}, "charge id"),
    ({"amount_refunded": None}, "amount or amount_refunded"),
    ({"amount_refunded": 2501}, "amount_refunded"), ({"amount_refunded": -1},
                                                     "amount_refunded"),
    ({"refunded": "yes"}, "refunded"), ({"payment_intent": "pi_1/../x"}, "payment_intent"),
    ({"metadata": {"paykube_name": "x" * 254}}, "metadata.paykube_name"),
    ({"livemode": 1}, "livemode"),
])
def test_a_charge_stripe_would_not_send_is_refused_by_field(changes: dict[str, Any],
                                                            field: str) -> None:
    with pytest.raises(ProviderPayloadInvalid) as refused:
        charge_refunded_facts(stripe_charge(**changes))
    assert refused.value.param == field


def test_endpoints_subscribe_to_session_and_refund_events() -> None:
    assert {"refund.created", "refund.updated", "refund.failed",
            "charge.refunded"} == REFUND_EVENTS
    assert REFUND_EVENTS | {"checkout.session.completed"} <= SUBSCRIBED_EVENTS


async def answered(body: dict[str, Any], call: str) -> ProviderPayloadInvalid:
    """What the adapter makes of a 200 answer `body` to one refund call: a PSP (or a proxy
    in between) answering for another object must not be taken for the one asked about."""
    answer = httpx.MockTransport(lambda _request: httpx.Response(200, json=body))
    stripe = StripeProvider(api_base="http://stripe.invalid", attempts=1, transport=answer,
                            limiter=RateLimiter(rate=1000, burst=10))
    key = SecretStr("sk_test_unit")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: stripe.create_refund(
            CreateRefund(REFUND_REF, SESSION_REF, "pi_1Asked", 500, "eur"), key),
        "get": lambda: stripe.get_refund("re_1Asked", key),
        "list": lambda: stripe.list_refunds("pi_1Asked", key),
    }
    try:
        with pytest.raises(ProviderPayloadInvalid) as caught:
            await calls[call]()
    finally:
        await stripe.aclose()
    return caught.value


@pytest.mark.parametrize(("call", "body", "field"), [
    ("create", stripe_refund(payment_intent="pi_1Other"), "refund payment_intent"),
    ("get", stripe_refund(id="re_1Other"), "refund id"),
    ("list", {"object": "list", "has_more": False,
              "data": [stripe_refund(payment_intent="pi_1Other")]}, "refund payment_intent"),
    ("list", {"object": "list", "has_more": False, "data": "nope"}, "refund list data"),
    ("list", {"object": "list", "has_more": True, "data": []}, "refund list"),
])
async def test_an_answer_about_another_object_is_refused(call: str, body: dict[str, Any],
                                                         field: str) -> None:
    refused = await answered(body, call)
    assert refused.param == field
    assert not refused.retryable
