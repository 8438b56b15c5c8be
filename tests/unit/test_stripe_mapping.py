"""Stripe session/event mapping and request encoding (pure parts of the Stripe adapter)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from paykube.api.types import LineItem, ObjectRef, PaymentSessionSpec, Phase
from paykube.providers.base import CreateSession
from paykube.providers.stripe import create_params, encode_form, event_phase, session_phase

REF = ObjectRef("shop", "order-1", "0b7d7c1e-uid")


@pytest.mark.parametrize(
    ("status", "payment_status", "phase"),
    [
        ("open", "unpaid", Phase.OPEN),
        ("complete", "paid", Phase.PAID),
        ("complete", "no_payment_required", Phase.PAID),
        ("complete", "unpaid", Phase.PROCESSING),
        ("expired", "unpaid", Phase.EXPIRED),
    ],
)
def test_session_phase(status: str, payment_status: str, phase: Phase) -> None:
    assert session_phase({"status": status, "payment_status": payment_status}) is phase


@pytest.mark.parametrize(
    ("payment_status", "intent_status", "phase"),
    [
        ("unpaid", "requires_payment_method", Phase.FAILED),
        ("unpaid", "canceled", Phase.FAILED),
        ("unpaid", "processing", Phase.PROCESSING),
        ("unpaid", "succeeded", Phase.PAID),
        ("unpaid", "requires_action", Phase.PROCESSING),
        ("paid", "succeeded", Phase.PAID),
        ("paid", "requires_payment_method", Phase.PAID),  # paid is never taken back
    ],
)
def test_session_phase_with_expanded_payment_intent(
        payment_status: str, intent_status: str, phase: Phase) -> None:
    session = {"status": "complete", "payment_status": payment_status,
               "payment_intent": {"id": "pi_1", "object": "payment_intent",
                                  "status": intent_status}}
    assert session_phase(session) is phase


def test_unexpanded_intent_of_complete_unpaid_session_is_processing() -> None:
    """A webhook's session carries the intent's id only: nothing to tell a failure by."""
    session = {"status": "complete", "payment_status": "unpaid", "payment_intent": "pi_1"}
    assert session_phase(session) is Phase.PROCESSING


def test_event_phase() -> None:
    complete = {"status": "complete", "payment_status": "unpaid"}
    assert event_phase("checkout.session.completed", complete) is Phase.PROCESSING
    assert event_phase("checkout.session.async_payment_succeeded", complete) is Phase.PAID
    assert event_phase("checkout.session.async_payment_failed", complete) is Phase.FAILED
    assert event_phase("checkout.session.expired", {"status": "expired"}) is Phase.EXPIRED
    assert event_phase("charge.refunded", complete) is None


def spec(**changes: object) -> PaymentSessionSpec:
    base = PaymentSessionSpec.from_dict({
        "amount": 2500, "currency": "eur", "successUrl": "https://shop.example/ok",
        "cancelUrl": "https://shop.example/cancel", "description": "Gift card",
        "metadata": {"order": "A-17"},
    })
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_create_params_single_item_metadata_and_reference() -> None:
    expires = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    params = create_params(CreateSession(REF, spec(), expires))
    assert params["client_reference_id"] == REF.uid
    assert params["expires_at"] == int(expires.timestamp())
    assert params["metadata"] == {"order": "A-17", "paykube_namespace": "shop",
                                  "paykube_name": "order-1", "paykube_uid": REF.uid}
    assert params["line_items"] == [{"quantity": 1, "price_data": {
        "currency": "eur", "unit_amount": 2500, "product_data": {"name": "Gift card"}}}]


def test_create_params_line_items_and_idempotency_key() -> None:
    items = (LineItem("a", 1000, 2), LineItem("b", 500, 1))
    request = CreateSession(REF, spec(line_items=items), dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    assert [i["quantity"] for i in create_params(request)["line_items"]] == [2, 1]
    assert request.idempotency_key == f"paykube:{REF.uid}:create"


def test_encode_form_nests_like_stripe() -> None:
    assert encode_form({"a": 1, "m": {"k": "v"}, "l": [{"x": True}, {"x": None}], "s": ["p"]}) == [
        ("a", "1"), ("m[k]", "v"), ("l[0][x]", "true"), ("s[0]", "p"),
    ]
