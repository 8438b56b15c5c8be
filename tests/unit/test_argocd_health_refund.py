"""docs/argocd-health-refund.lua, the Argo CD health check for PaymentRefund, run on real
statuses: each comes from paykube's own refund lifecycle function (the one the operator and
the webhook write with), so the check reads the field names that really exist. Lua 5.1, as
Argo CD's gopher-lua runs it (see test_argocd_health.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from paykube.api.refunds import RefundSnapshot, RefundStatus
from paykube.api.types import ErrorInfo, RefundPhase, Source
from paykube.errors import ErrorCode
from paykube.refunds.lifecycle import (
    RefundObserved,
    RefundRefused,
    RefundReserved,
    RefundSyncFailed,
    advance_refund,
    initial_refund,
)
from tests.unit.argocd_lua import run_health

SCRIPT = (Path(__file__).resolve().parents[2] / "docs" / "argocd-health-refund.lua"
          ).read_text()
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def health(status: RefundStatus | None) -> tuple[str, str]:
    obj: dict[str, Any] = {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentRefund",
        "metadata": {"name": "refund-1", "namespace": "shop", "generation": 1},
        "spec": {"sessionRef": {"name": "order-1001"}, "amount": 500},
    }
    if status is not None:
        obj["status"] = status.to_dict()
    return run_health(SCRIPT, obj)


def reserved() -> RefundStatus:
    return advance_refund(initial_refund(NOW, 1), RefundReserved(
        session_uid="uid-1", payment_id="pi_1", amount=500, currency="usd",
        provider="stripe", generation=1), NOW)


def reported(current: RefundStatus, phase: RefundPhase, *,
             authoritative: bool = True) -> RefundStatus:
    snapshot = RefundSnapshot("re_1", phase, 500, "usd", "pi_1",
                              failure_reason="insufficient_funds"
                              if phase is RefundPhase.FAILED else None)
    return advance_refund(current, RefundObserved(
        snapshot, Source.OPERATOR if authoritative else Source.WEBHOOK, "evt_1",
        authoritative=authoritative, generation=1), NOW)


def test_no_status_yet_is_progressing() -> None:
    assert health(None)[0] == "Progressing"


@pytest.mark.parametrize(("make", "expected", "fragment"), [
    (reserved, "Progressing", "reserving the amount"),
    (lambda: reported(reserved(), RefundPhase.PENDING), "Progressing",
     "processing the refund of 500 usd"),
    (lambda: reported(reserved(), RefundPhase.REQUIRES_ACTION), "Suspended",
     "customer's details"),
    (lambda: reported(reserved(), RefundPhase.SUCCEEDED), "Healthy",
     "Succeeded: 500 usd refunded"),
    (lambda: reported(reserved(), RefundPhase.FAILED), "Degraded",
     "Failed: RefundFailed (insufficient_funds)"),
    (lambda: reported(reserved(), RefundPhase.CANCELED), "Degraded", "no money was returned"),
], ids=["reserved", "pending-at-psp", "requires-action", "succeeded", "failed", "canceled"])
def test_each_phase(make: Any, expected: str, fragment: str) -> None:
    status = make()
    got, message = health(status)
    assert (got, fragment in message) == (expected, True), (status.phase, message)


def test_a_refusal_before_any_psp_call_is_degraded_with_its_reason() -> None:
    error = ErrorInfo(ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE.value,
                      "500 exceeds the refundable rest of 300")
    refused = advance_refund(reserved(), RefundRefused(error, generation=1), NOW)
    assert refused.phase is RefundPhase.FAILED
    assert health(refused) == (
        "Degraded", "Failed: AmountExceedsRefundable: 500 exceeds the refundable rest of 300")


def test_a_retryable_error_stays_progressing_and_says_so() -> None:
    error = ErrorInfo("ProviderUnavailable", "Stripe answered 503", retryable=True)
    status = advance_refund(reserved(), RefundSyncFailed(error, generation=1), NOW)
    assert health(status) == ("Progressing",
                              "Pending (retrying): ProviderUnavailable: Stripe answered 503")


def test_a_reported_failure_awaiting_confirmation_keeps_the_phase() -> None:
    # A signed refund.failed is not believed until the operator's retrieve says so: the
    # money may well have gone back (a replayed event must not invite a second refund).
    succeeded = reported(reserved(), RefundPhase.SUCCEEDED)
    doubted = reported(succeeded, RefundPhase.FAILED, authoritative=False)
    assert doubted.phase is RefundPhase.SUCCEEDED and doubted.unconfirmed is not None
    got, message = health(doubted)
    assert got == "Healthy"
    assert message.endswith("(a reported Failed is being confirmed)")


def test_an_unknown_phase_is_unknown() -> None:
    raw = reserved().to_dict() | {"phase": "Reversed"}
    assert run_health(SCRIPT, {"status": raw, "metadata": {}}) == (
        "Unknown", "Unknown phase Reversed")
