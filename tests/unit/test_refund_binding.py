"""Which verified refund events may move which PaymentRefund, and which refunded-amount
reports may move which PaymentSession (pure): for both PSP types, the route's account, the
PSP, the refund or payment, the mode, the Connect account and the amount must all be the
object's own. Another tenant's account, with its own valid signing secret, moves nothing."""

from __future__ import annotations

import pytest

from paykube.api.providers import ProviderId
from paykube.api.refunds import RefundStatus
from paykube.api.types import Phase, ProviderRef, RefundPhase, Status
from paykube.binding import Ignored, refund_binding, refunded_binding

NAMESPACE = "team-a"
REF = ProviderRef("PaymentProvider", "acct-a")
A = ProviderId.bound_to(NAMESPACE, REF)
B = ProviderId("PaymentProvider", "team-b", "acct-b")  # another tenant's own account
CLUSTER_B = ProviderId("ClusterPaymentProvider", "", "acct-a")  # same name, other kind


def refund_status(provider: str) -> RefundStatus:
    refund_id = "rfnd_A1" if provider == "razorpay" else "re_A1"
    return RefundStatus(phase=RefundPhase.PENDING, provider=provider, provider_ref=REF,
                        refund_id=refund_id, amount=500, currency="inr", livemode=False)


def check_refund(provider: str, **changes: object) -> Ignored | None:
    status = refund_status(provider)
    args: dict[str, object] = {
        "route": A, "namespace": NAMESPACE, "status": status, "refund_id": status.refund_id,
        "amount": 500, "livemode": False, "connect_account": None, "provider_type": provider}
    return refund_binding(**(args | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", ["stripe", "razorpay"])
def test_the_refunds_own_event_applies(provider: str) -> None:
    assert check_refund(provider) is None


@pytest.mark.parametrize("provider", ["stripe", "razorpay"])
@pytest.mark.parametrize(("changes", "reason"), [
    ({"route": B}, Ignored.WRONG_ACCOUNT),
    ({"route": CLUSTER_B}, Ignored.WRONG_ACCOUNT),
    ({"route": ProviderId.default()}, Ignored.WRONG_ACCOUNT),
    ({"refund_id": "rfnd_other"}, Ignored.REFUND_MISMATCH),
    ({"amount": 499}, Ignored.AMOUNT_MISMATCH),
    ({"livemode": True}, Ignored.LIVEMODE_MISMATCH),
    ({"connect_account": "acct_1Other"}, Ignored.CONNECT_ACCOUNT_MISMATCH),
], ids=["other-tenant", "cluster-account-same-name", "default-route", "other-refund",
        "amount", "live-mode", "connect"])
def test_anything_else_is_ignored_with_its_reason(provider: str, changes: dict[str, object],
                                                  reason: Ignored) -> None:
    assert check_refund(provider, **changes) is reason


def test_a_refund_not_yet_named_by_the_operator_cannot_be_adopted() -> None:
    unnamed = RefundStatus(phase=RefundPhase.PENDING, provider="razorpay", provider_ref=REF)
    assert check_refund("razorpay", status=unnamed, refund_id="rfnd_B") is Ignored.NO_REFUND_YET


def test_the_other_psps_event_is_ignored() -> None:
    assert check_refund("stripe", provider_type="razorpay") is Ignored.WRONG_PROVIDER


SESSION = Status(phase=Phase.PAID, provider="stripe", payment_intent_id="pi_A",
                 amount_total=1999, currency="usd", livemode=False, session_id="cs_A")


def check_refunded(**changes: object) -> Ignored | None:
    args: dict[str, object] = {
        "route": A, "bound": A, "status": SESSION, "payment_id": "pi_A",
        "amount_refunded": 500, "livemode": False, "connect_account": None}
    return refunded_binding(**(args | changes))  # type: ignore[arg-type]


def test_the_payments_own_refunded_amount_applies() -> None:
    assert check_refunded() is None
    assert check_refunded(amount_refunded=1999) is None


@pytest.mark.parametrize(("changes", "reason"), [
    ({"route": B}, Ignored.WRONG_ACCOUNT),
    ({"payment_id": "pi_other"}, Ignored.PAYMENT_MISMATCH),
    ({"status": Status(phase=Phase.OPEN, provider="stripe", payment_intent_id="pi_A",
                       amount_total=1999)}, Ignored.PAYMENT_MISMATCH),
    ({"amount_refunded": 2000}, Ignored.AMOUNT_MISMATCH),
    ({"amount_refunded": -1}, Ignored.AMOUNT_MISMATCH),
    ({"livemode": True}, Ignored.LIVEMODE_MISMATCH),
    ({"connect_account": "acct_1Other"}, Ignored.CONNECT_ACCOUNT_MISMATCH),
    ({"provider_type": "razorpay"}, Ignored.WRONG_PROVIDER),
], ids=["other-tenant", "other-payment", "not-paid", "above-the-total", "negative",
        "live-mode", "connect", "other-psp"])
def test_a_refunded_amount_that_is_not_the_payments_is_ignored(
        changes: dict[str, object], reason: Ignored) -> None:
    assert check_refunded(**changes) is reason
