"""Razorpay refund mapping and the refund create's body (pure parts of the adapter)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from paykube.api.types import ObjectRef, RefundPhase
from paykube.errors import ErrorCode, ProviderError
from paykube.providers.base import CreateRefund, ProviderPayloadInvalid
from paykube.providers.razorpay import (
    refund_body,
    refund_idempotency_key,
    refund_phase,
    refund_snapshot,
)

REFUND_REF = ObjectRef("shop", "order-1-shipping", "7f0c2b9e-2f0e-4c55-9d7c-3c2a1b0e9f11")
SESSION_REF = ObjectRef("shop", "order-1", "0b7d-session-uid")


def razorpay_refund(**changes: Any) -> dict[str, Any]:
    refund: dict[str, Any] = {
        "id": "rfnd_FP8QHiV938haTz", "entity": "refund", "amount": 50000,
        "currency": "INR", "payment_id": "pay_29QQoUBi66xm2f",
        "notes": {"paykube_uid": REFUND_REF.uid}, "receipt": REFUND_REF.uid,
        "acquirer_data": {"arn": None}, "created_at": 1_597_078_866, "batch_id": None,
        "status": "processed", "speed_processed": "normal", "speed_requested": "normal",
    }
    refund.update(changes)
    return refund


@pytest.mark.parametrize(("status", "phase"), [
    ("pending", RefundPhase.PENDING), ("processed", RefundPhase.SUCCEEDED),
    ("failed", RefundPhase.FAILED),
])
def test_every_razorpay_refund_status_has_its_phase(status: str, phase: RefundPhase) -> None:
    assert refund_phase({"status": status}) is phase


def test_a_refund_snapshot_keeps_the_facts_paykube_needs() -> None:
    snap = refund_snapshot(razorpay_refund())
    assert (snap.refund_id, snap.phase, snap.amount) == (
        "rfnd_FP8QHiV938haTz", RefundPhase.SUCCEEDED, 50000)
    assert (snap.currency, snap.payment_id, snap.provider_status) == (
        "inr", "pay_29QQoUBi66xm2f", "processed")
    assert snap.refund_uid == REFUND_REF.uid
    assert snap.livemode is None


def test_a_dashboard_refund_has_no_uid_whatever_its_receipt_says() -> None:
    snap = refund_snapshot(razorpay_refund(notes=[], receipt=REFUND_REF.uid))
    assert snap.refund_uid is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": "pay_29QQoUBi66xm2f"}, "refund id"), ({"id": None}, "refund id"),
    ({"amount": "500"}, "amount"), ({"amount": None}, "amount"),
    ({"payment_id": "pay_x/../y"}, "payment_id"), ({"status": "refunded"}, "refund status"),
    ({"notes": "x"}, "notes"), ({"notes": {"paykube_uid": 5}}, "notes.paykube_uid"),
])
def test_a_refund_razorpay_would_not_send_is_refused_by_field(changes: dict[str, Any],
                                                              field: str) -> None:
    with pytest.raises(ProviderPayloadInvalid) as refused:
        refund_snapshot(razorpay_refund(**changes))
    assert refused.value.param == field


def test_the_body_carries_the_uid_as_receipt_and_names_the_refund_in_notes() -> None:
    request = CreateRefund(REFUND_REF, SESSION_REF, "pay_29QQoUBi66xm2f", 500, "inr",
                           "requested_by_customer", {"ticket": "SUP-1", "paykube_uid": "x"})
    assert refund_body(request) == {
        "amount": 500, "speed": "normal", "receipt": REFUND_REF.uid,
        "notes": {"ticket": "SUP-1", "paykube_namespace": "shop",
                  "paykube_name": "order-1-shipping", "paykube_uid": REFUND_REF.uid,
                  "paykube_session": "order-1"},
    }
    assert len(REFUND_REF.uid) <= 40  # Razorpay's receipt limit holds a Kubernetes uid


def test_too_many_notes_are_refused_before_any_call() -> None:
    metadata = {f"k{i}": "v" for i in range(12)}
    with pytest.raises(ProviderError) as refused:
        refund_body(CreateRefund(REFUND_REF, SESSION_REF, "pay_1", 500, "inr", None, metadata))
    assert (refused.value.code, refused.value.param) == (ErrorCode.PROVIDER_REJECTED, "notes")
    assert not refused.value.retryable


def test_the_idempotency_key_is_paykubes_in_razorpays_characters() -> None:
    request = CreateRefund(REFUND_REF, SESSION_REF, "pay_1", 500, "inr")
    key = refund_idempotency_key(request)
    assert key == f"paykube_{REFUND_REF.uid}_refund"
    assert re.fullmatch(r"[A-Za-z0-9_-]{10,}", key)
