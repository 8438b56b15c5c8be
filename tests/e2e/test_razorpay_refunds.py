"""Refunds of Razorpay payments through the real operator, webhook and Razorpay emulator:
the same PaymentRefund, `POST /v1/payments/{id}/refund`, and `refund.processed` /
`refund.failed` bound to the refund by its notes on the account's own route."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.e2e.razorpay_stack import PROVIDER, RazorpayTenant, history, wait_provider_ready
from tests.e2e.razorpay_stack import razorpay_tenant as razorpay_tenant  # the fixture
from tests.e2e.test_refunds import (
    accepted_by_webhook,
    apply_refund,
    get_refund,
    records_settled,
    wait_for_refund,
    wait_refund,
    wait_refunded,
)
from tests.plugins.paykube_fixtures import create_provider, solo_operator


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


def test_another_razorpay_tenant_cannot_move_a_tenants_refund(
        razorpay_tenant: RazorpayTenant, tmp_path: Path) -> None:
    """Tenant B, with its own Razorpay account and signing secret, takes A's real
    `refund.processed` body, turns it into `refund.failed` and signs it: on B's route it is
    B's account's event and binds to nothing of A's; on A's route B's signature is refused.
    A's refund stays Succeeded and A's session keeps its refunded amount."""
    tenant, stack = razorpay_tenant, razorpay_tenant.stack
    payment = paid(tenant, "tea", 40000)
    apply_refund(stack, tenant.namespace, "tea-back", "tea", amount=15000)
    done = wait_refund(stack, tenant.namespace, "tea-back", "Succeeded", timeout=120)
    before = wait_refunded(stack, tenant.namespace, "tea", 15000)
    (processed,) = [e for e in tenant.control.events(event="refund.processed")
                    if e["body"]["payload"]["refund"]["entity"]["id"] == done["status"]["refundId"]]
    real = json.loads(tenant.control.event_payload(processed["id"]))
    assert real["payload"]["refund"]["entity"]["notes"]["paykube_name"] == "tea-back"
    assert real["payload"]["payment"]["entity"]["id"] == payment

    key_id, key_secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
    b_account = tenant.control.create_account({key_id: key_secret})["id"]
    b_signing = secrets.token_urlsafe(24)
    with solo_operator(stack, tmp_path, PAYKUBE_RAZORPAY_API_BASE=tenant.base_url) as b:
        create_provider(stack.kube, b.namespace, PROVIDER, f"{key_id}:{key_secret}",
                        signing_secret=b_signing, type="razorpay", accountId=b_account)
        b_route = wait_provider_ready(stack, b.namespace, PROVIDER)["status"]["webhookPath"]
        failed = json.loads(json.dumps(real))
        failed["event"] = "refund.failed"
        failed["payload"]["refund"]["entity"]["status"] = "failed"
        as_b = {**failed, "account_id": b_account}
        for body, route in ((failed, b_route), (as_b, b_route)):
            answer = tenant.post(json.dumps(body).encode(), secret=b_signing, route=route)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outcome"] == "ignored_wrong_account", body["account_id"]
        refused = tenant.post(json.dumps(failed).encode(), secret=b_signing)  # A's route
        assert refused.status_code == 400
        assert refused.json() == {"error": {"code": "SignatureInvalid"}}
    after = get_refund(stack, tenant.namespace, "tea-back")
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"].get("unconfirmed") is None
    assert history(after) == history(done)
    session = tenant.get("tea")
    assert session["status"]["amountRefunded"] == before["status"]["amountRefunded"] == 15000
    assert tenant.control.refunds(payment)[0]["status"] == "processed"
