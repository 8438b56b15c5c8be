"""Refunds of Razorpay payments through the real operator, webhook and Razorpay emulator:
the same PaymentRefund, `POST /v1/payments/{id}/refund`, and `refund.processed` /
`refund.failed` bound to the refund by its notes on the account's own route."""

from __future__ import annotations

from tests.e2e.razorpay_stack import RazorpayTenant, history
from tests.e2e.razorpay_stack import razorpay_tenant as razorpay_tenant  # the fixture
from tests.e2e.test_refunds import (
    accepted_by_webhook,
    apply_refund,
    records_settled,
    wait_for_refund,
    wait_refund,
)


def paid(tenant: RazorpayTenant, name: str, amount: int) -> str:
    opened = tenant.open(name, amount=amount)
    tenant.control.pay(opened["status"]["sessionId"])
    payment: str = tenant.wait_phase(name, "Paid")["status"]["paymentIntentId"]
    assert payment.startswith("pay_")
    return payment


def test_a_razorpay_refund_is_processed_and_reported_by_its_webhook(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant, stack = razorpay_tenant, razorpay_tenant.stack
    payment = paid(tenant, "chai", 90000)
    tenant.control.refund_mode("pending", payment)
    apply_refund(stack, tenant.namespace, "chai-back", "chai", amount=30000)
    pending = wait_for_refund(stack, tenant.namespace, "chai-back",
                              lambda s: bool(s.get("refundId")), "a refund id")
    refund_id = pending["status"]["refundId"]
    assert refund_id.startswith("rfnd_")
    assert pending["status"]["provider"] == "razorpay"
    moved = tenant.control.refund_transition(refund_id, "processed")
    done = wait_refund(stack, tenant.namespace, "chai-back", "Succeeded")
    assert history(done)[-1][0] == "Succeeded"
    assert accepted_by_webhook(moved)  # bound by its notes on the account's route
    at_razorpay = tenant.control.refunds(payment)
    assert [(r["id"], r["amount"]) for r in at_razorpay] == [(refund_id, 30000)]
    assert at_razorpay[0]["notes"]["paykube_name"] == "chai-back"
    # The rest, without an amount: the operator's own list of the payment's refunds.
    apply_refund(stack, tenant.namespace, "chai-rest", "chai")
    rest = wait_for_refund(stack, tenant.namespace, "chai-rest",
                           lambda s: bool(s.get("refundId")), "a refund id")
    assert rest["status"]["amount"] == 60000
    tenant.control.refund_transition(rest["status"]["refundId"], "failed")
    failed = wait_refund(stack, tenant.namespace, "chai-rest", "Failed")
    assert failed["status"]["error"]["code"] == "RefundFailed"
    session = stack.wait_for(tenant.namespace, "chai",
                             lambda o: records_settled(o, 2, 30000), timeout=120.0,
                             what="both records settled, 30000 refunded")
    assert session["status"]["phase"] == "Paid"
    assert {r["name"]: r["phase"] for r in session["status"]["refunds"]} == {
        "chai-back": "Succeeded", "chai-rest": "Failed"}
