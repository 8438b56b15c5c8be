"""docs/argocd-health.lua, the Argo CD health check for PaymentSession, run on real statuses.

The statuses come from paykube's own lifecycle function (the one the operator and the
webhook write with), so the check reads the field names that really exist. The script runs
in Lua 5.1 (lupa's lua51 module), the dialect of gopher-lua that Argo CD embeds, the same
way Argo CD runs it: a chunk with the global `obj` that returns {status, message}.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from paykube.api.types import ErrorInfo, Phase, Source, Status
from paykube.lifecycle import (
    ProviderObserved,
    ProviderRejected,
    SessionSnapshot,
    SyncFailed,
    advance,
    initial,
)
from tests.unit.argocd_lua import run_health

SCRIPT = (Path(__file__).resolve().parents[2] / "docs" / "argocd-health.lua").read_text()
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
EXPIRES = "2030-01-02T12:00:00Z"
SESSION = SessionSnapshot("cs_test_1", url="https://checkout.stripe.com/c/pay/cs_test_1",
                          payment_intent_id="pi_1", payment_status="paid", amount_total=1999,
                          currency="usd", expires_at=EXPIRES)


def health(status: Status | dict[str, Any] | None, generation: int = 1) -> tuple[str, str]:
    obj: dict[str, Any] = {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
        "metadata": {"name": "order-1001", "namespace": "shop", "generation": generation},
        "spec": {"amount": 1999, "currency": "usd"},
    }
    if status is not None:
        obj["status"] = status.to_dict() if isinstance(status, Status) else status
    return run_health(SCRIPT, obj)


def observed(current: Status, phase: Phase, *, cancel: bool = False,
             source: Source = Source.POLL) -> Status:
    return advance(current, ProviderObserved(phase, SESSION, source, "evt_1",
                                             cancel_requested=cancel, generation=1,
                                             authoritative=source is not Source.WEBHOOK), NOW)


def pending() -> Status:
    return initial(NOW, 1, EXPIRES)


def open_() -> Status:
    return observed(pending(), Phase.OPEN, source=Source.OPERATOR)


def test_the_script_is_lua_51() -> None:
    assert lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"


def test_no_status_yet_is_progressing() -> None:
    status, message = health(None)
    assert status == "Progressing"
    assert "operator" in message


@pytest.mark.parametrize(("make", "expected", "fragment"), [
    (pending, "Progressing", "Pending"),
    (open_, "Progressing", f"waiting for the customer to pay (expires {EXPIRES})"),
    (lambda: observed(open_(), Phase.PROCESSING), "Progressing", "Processing"),
    (lambda: observed(open_(), Phase.PAID), "Healthy", "Paid 1999 usd"),
    (lambda: observed(observed(open_(), Phase.PROCESSING), Phase.PAID), "Healthy", "Paid"),
    (lambda: observed(open_(), Phase.EXPIRED), "Healthy", "Expired"),
    (lambda: observed(open_(), Phase.EXPIRED, cancel=True), "Healthy", "Canceled"),
], ids=["pending", "open", "processing", "paid", "paid-after-processing", "expired",
        "canceled"])
def test_each_phase(make: Any, expected: str, fragment: str) -> None:
    status = make()
    status_, message = health(status)
    assert (status_, fragment in message) == (expected, True), (status.phase, message)


def test_failed_is_degraded_with_the_error_and_its_explanation() -> None:
    error = ErrorInfo("ProviderRejected", "Amount must be at least 50 cents",
                      provider_code="amount_too_small",
                      doc_url="https://stripe.com/docs/error-codes/amount-too-small",
                      explanation="Raise spec.amount to at least 50 (usd).")
    failed = advance(pending(), ProviderRejected(error, generation=1), NOW)
    assert failed.phase is Phase.FAILED
    status, message = health(failed)
    assert status == "Degraded"
    assert message == ("Failed: ProviderRejected (amount_too_small): Amount must be at least "
                       "50 cents - Raise spec.amount to at least 50 (usd).")


def test_a_retryable_error_stays_progressing_and_says_so() -> None:
    error = ErrorInfo("ProviderUnavailable", "Stripe answered 503", retryable=True)
    status, message = health(advance(pending(), SyncFailed(error, generation=1), NOW))
    assert status == "Progressing"
    assert message == "Pending (retrying): ProviderUnavailable: Stripe answered 503"


def test_a_permanent_error_before_the_end_is_degraded() -> None:
    # e.g. the provider refused to expire an open session on spec.cancel: a person must act.
    error = ErrorInfo("CredentialsInvalid", "Invalid API key provided")
    still_open = advance(open_(), ProviderRejected(error, generation=1), NOW)
    assert still_open.phase is Phase.OPEN
    status, message = health(still_open)
    assert status == "Degraded"
    assert message == "Open: CredentialsInvalid: Invalid API key provided"


def test_a_spec_change_not_yet_observed_is_progressing() -> None:
    # spec.cancel set (generation 2); the operator has not reconciled it yet.
    status, message = health(open_(), generation=2)
    assert status == "Progressing"
    assert message == "Waiting for the operator to observe generation 2"
    # A terminal phase never changes again: its health does not wait for the generation.
    assert health(observed(open_(), Phase.PAID), generation=2)[0] == "Healthy"


def test_an_unknown_phase_is_unknown() -> None:
    status, message = health({"phase": "Refunded"})
    assert (status, message) == ("Unknown", "Unknown phase Refunded")
