"""Every lifecycle path of a Razorpay payment through the real operator, webhook and
Razorpay emulator processes: Open then Paid, part-paid (Processing) then Paid, expired,
cancelled while created and refused once paid, deletion with Expire and Orphan, a crash
between the create and the status write, and 30% faults."""

from __future__ import annotations

import json

from paykube_dev.services import ActiveMQ
from tests.e2e.razorpay_stack import RazorpayTenant, history
from tests.e2e.razorpay_stack import razorpay_tenant as razorpay_tenant  # the fixture
from tests.e2e.test_payment_events import events_of
from tests.plugins.paykube_fixtures import EVENTS_QUEUE, phase_of
from tests.plugins.stomp_helpers import subscriber


def link_of(tenant: RazorpayTenant, name: str) -> dict[str, object]:
    obj = tenant.get(name)
    return tenant.control.link(obj["status"]["sessionId"])


def test_a_link_opens_and_is_paid_through_its_own_signed_webhook(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    opened = tenant.open("tea", amount=125000, metadata={"order": "77"})
    status = opened["status"]
    assert status["sessionId"].startswith("plink_")
    assert (status["provider"], status["account"]) == ("razorpay", tenant.account_id)
    assert (status["amountTotal"], status["currency"]) == (125000, "inr")
    assert status["url"] == tenant.control.link(status["sessionId"])["short_url"]
    link = tenant.control.link(status["sessionId"])
    assert link["reference_id"] == opened["metadata"]["uid"]
    assert link["currency"] == "INR" and link["accept_partial"] is False
    assert link["notes"] == {"order": "77", "paykube_namespace": tenant.namespace,
                             "paykube_name": "tea", "paykube_uid": opened["metadata"]["uid"]}
    tenant.control.pay(status["sessionId"])
    paid = tenant.wait_phase("tea", "Paid")
    assert history(paid) == [("Pending", "operator"), ("Open", "operator"),
                             ("Paid", "webhook")]
    assert paid["status"]["paymentIntentId"].startswith("pay_")
    assert paid["status"]["history"][-1]["eventId"].startswith("evt_")
    wide = tenant.stack.kube.kubectl("get", "paysess", "tea", "-n", tenant.namespace,
                                     "-o", "wide").stdout
    assert "razorpay" in wide


def test_a_razorpay_payment_s_cloudevents_name_the_provider(
        razorpay_tenant: RazorpayTenant, activemq: ActiveMQ) -> None:
    """Downstream unchanged: the same event types, with data.provider saying razorpay."""
    tenant = razorpay_tenant
    with subscriber(activemq, EVENTS_QUEUE) as sub:
        opened = tenant.open("evented")
        tenant.control.pay(opened["status"]["sessionId"])
        tenant.wait_phase("evented", "Paid")
        uid = opened["metadata"]["uid"]
        by_id = {e["id"]: e for e in events_of(sub, uid, 3)}
    assert sorted(by_id) == sorted(f"{uid}/{p}" for p in ("pending", "open", "paid"))
    paid = by_id[f"{uid}/paid"]
    assert paid["type"] == "dev.paykube.paymentsession.paid"
    assert paid["data"]["provider"] == "razorpay"
    assert paid["data"]["sessionId"] == opened["status"]["sessionId"]


def test_a_create_razorpay_refuses_ends_failed_with_its_code_and_an_explanation(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    tenant.apply("too-small", amount=50)  # Razorpay's least is 100 (1.00 INR)
    failed = tenant.wait_phase("too-small", "Failed")
    error = failed["status"]["error"]
    assert (error["code"], error["providerCode"], error["param"]) == (
        "ProviderRejected", "BAD_REQUEST_ERROR", "amount")
    assert "spec.amount" in error["explanation"] and "Stripe" not in error["explanation"]
    assert failed["status"].get("sessionId") is None


def test_a_part_payment_is_processing_until_the_rest_is_paid(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    opened = tenant.open("fees", amount=90000, razorpay={"acceptPartial": True,
                                                         "firstMinPartialAmount": 30000})
    link_id = opened["status"]["sessionId"]
    tenant.control.part_pay(link_id, 30000)
    processing = tenant.wait_phase("fees", "Processing")
    assert processing["status"]["paymentStatus"] == "partially_paid"
    tenant.control.pay(link_id)
    paid = tenant.wait_phase("fees", "Paid")
    assert [p for p, _ in history(paid)] == ["Pending", "Open", "Processing", "Paid"]
    assert history(paid)[2:] == [("Processing", "webhook"), ("Paid", "webhook")]


def test_an_expired_link_ends_expired_once_the_operator_confirms(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    link_id = tenant.open("late")["status"]["sessionId"]
    tenant.control.expire(link_id)
    expired = tenant.wait_phase("late", "Expired")
    # Reported by the webhook, confirmed by the operator's retrieve, credited to the event.
    assert history(expired)[-1] == ("Expired", "webhook")
    assert expired["status"].get("unconfirmed") is None


def test_cancel_cancels_a_created_link(razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    link_id = tenant.open("unwanted")["status"]["sessionId"]
    tenant.apply("unwanted", cancel=True)
    canceled = tenant.wait_phase("unwanted", "Canceled")
    assert tenant.control.link(link_id)["status"] == "cancelled"
    assert history(canceled)[-1][0] == "Canceled"
    cancels = tenant.control.requests(f"/v1/payment_links/{link_id}/cancel")
    assert [r["status"] for r in cancels] == [200]


def test_cancel_after_payment_is_refused_and_stays_paid(razorpay_tenant: RazorpayTenant,
                                                         ) -> None:
    tenant = razorpay_tenant
    link_id = tenant.open("bought")["status"]["sessionId"]
    tenant.control.pay(link_id)
    tenant.wait_phase("bought", "Paid")
    tenant.apply("bought", cancel=True)
    tenant.stack.wait_for(tenant.namespace, "bought",
                          lambda o: o["status"].get("observedGeneration") == 2,
                          what="the cancel seen")
    assert phase_of(tenant.get("bought")) == "Paid"
    assert tenant.control.link(link_id)["status"] == "paid"


def test_delete_cancels_an_open_link_and_orphan_leaves_it(razorpay_tenant: RazorpayTenant,
                                                           ) -> None:
    tenant = razorpay_tenant
    kubectl = tenant.stack.kube.kubectl
    expired_id = tenant.open("deleted")["status"]["sessionId"]
    orphan_id = tenant.open("orphaned", deletionPolicy="Orphan")["status"]["sessionId"]
    kubectl("delete", "paysess", "deleted", "orphaned", "-n", tenant.namespace,
            "--timeout=60s")
    assert tenant.control.link(expired_id)["status"] == "cancelled"
    assert tenant.control.link(orphan_id)["status"] == "created"
    assert not tenant.control.requests(f"/v1/payment_links/{orphan_id}/cancel")


def test_a_crash_between_create_and_status_write_makes_one_link(
        razorpay_tenant: RazorpayTenant) -> None:
    """kill -9 the operator while the emulator holds the create's answer; after a restart
    the create is refused as a duplicate reference_id and the link is found by it."""
    tenant = razorpay_tenant

    def refused_creates() -> int:
        creates = tenant.control.requests("/v1/payment_links", method="POST")
        return sum(1 for r in creates if r["status"] == 400)

    refused_before = refused_creates()  # other tests' refusals (an amount below 100)
    tenant.control.add_fault("hold", count=1, method="POST", path="/v1/payment_links")
    uid = tenant.apply("crashy")["metadata"]["uid"]
    tenant.control.wait_for_held(1)
    assert len(tenant.control.links(uid)) == 1
    tenant.solo.operator.kill()
    tenant.control.release()
    assert phase_of(tenant.get("crashy")) in (None, "Pending")
    tenant.solo.restart_operator()
    opened = tenant.wait_phase("crashy", "Open")
    links = tenant.control.links(uid)
    assert [link["id"] for link in links] == [opened["status"]["sessionId"]]
    assert refused_creates() - refused_before == 1, \
        "the retried create was refused as a duplicate reference_id"


def test_thirty_percent_faults_converge_to_one_link_per_object(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    objects = 12
    tenant.control.add_fault("rate_limit", count=None, probability=0.15, retry_after=1)
    tenant.control.add_fault("api_error", count=None, probability=0.18)  # of what is left
    try:
        uids = [tenant.apply(f"bulk-{i:02d}")["metadata"]["uid"] for i in range(objects)]
        for i in range(objects):
            tenant.wait_phase(f"bulk-{i:02d}", "Open", timeout=180)
    finally:
        tenant.control.clear_faults()
    faults = [r for r in tenant.control.requests() if r["fault"]]
    assert faults, "faults were injected"
    for i, uid in enumerate(uids):
        links = tenant.control.links(uid)
        assert len(links) == 1, f"bulk-{i:02d} has {len(links)} links"
        assert tenant.get(f"bulk-{i:02d}")["status"]["sessionId"] == links[0]["id"]
    assert json.dumps(tenant.get("bulk-00")["status"]).count("plink_") >= 1
