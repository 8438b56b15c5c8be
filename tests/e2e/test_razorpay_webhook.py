"""Attacks on the Razorpay route of the real webhook process: every answer is 4xx or an
acknowledged 2xx that moved nothing, never a 5xx. The object's status is compared before
and after, and duplicates and out-of-order deliveries leave the lifecycle where it was."""

from __future__ import annotations

import json
import time
from typing import Any

from paykube_dev.razorpay_emulator import sign_body
from tests.e2e.razorpay_stack import RazorpayTenant, history
from tests.e2e.razorpay_stack import razorpay_tenant as razorpay_tenant  # the fixture
from tests.plugins.paykube_fixtures import Manifest


def paid_event(tenant: RazorpayTenant, obj: Manifest, **link_changes: Any) -> bytes:
    """A payment_link.paid event about `obj`'s own link, as Razorpay would send it."""
    link = tenant.control.link(obj["status"]["sessionId"])
    entity = link | {"status": "paid", "amount_paid": link["amount"]} | link_changes
    return json.dumps({
        "entity": "event", "account_id": tenant.account_id, "event": "payment_link.paid",
        "contains": ["payment_link"], "payload": {"payment_link": {"entity": entity}},
        "created_at": int(time.time()),
    }, separators=(",", ":")).encode()


def facts(obj: Manifest) -> dict[str, Any]:
    """What an event could move: everything in status but the outbox's `published` flags
    and the conditions' bookkeeping, which the operator updates on its own meanwhile."""
    status = dict(obj["status"])
    status["history"] = [(h["phase"], h["source"], h.get("eventId"))
                         for h in status["history"]]
    status["conditions"] = sorted((c["type"], c["status"], c["reason"])
                                  for c in status.get("conditions", []))
    return status


def unchanged(tenant: RazorpayTenant, name: str, before: Manifest) -> None:
    time.sleep(1.0)  # what the webhook or a confirmation would have written, it has by now
    assert facts(tenant.get(name)) == facts(before)


def test_bad_signatures_are_400_and_move_nothing(razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    before = tenant.open("forged")
    body = paid_event(tenant, before)
    good = sign_body(body, tenant.signing)
    attempts = {
        "wrong signature": tenant.post(body, signature="0" * 64),
        "not hex": tenant.post(body, signature="t=1,v1=" + good),
        "one byte changed": tenant.post(body.replace(b'"paid"', b'"paiD"', 1), signature=good),
        "another account's secret": tenant.post(body, secret="tenant-b-secret"),
        "no signature": tenant.post(body, signature=""),
    }
    for what, response in attempts.items():
        assert response.status_code == 400, (what, response.status_code, response.text)
        assert response.json() == {"error": {"code": "SignatureInvalid"}}, what
    unchanged(tenant, "forged", before)


def test_a_signed_event_on_another_providers_route_is_refused(
        razorpay_tenant: RazorpayTenant) -> None:
    """The route names the account whose secrets verify: the Stripe family and another
    namespace's Razorpay route do not know this account's secret."""
    tenant = razorpay_tenant
    before = tenant.open("elsewhere")
    body = paid_event(tenant, before)
    for route in ("/webhooks/razorpay", f"/webhooks/razorpay/ns/{tenant.namespace}/other",
                  f"/webhooks/stripe/ns/{tenant.namespace}/razorpay-account"):
        response = tenant.post(body, route=route)
        assert response.status_code == 400, (route, response.status_code)
    unchanged(tenant, "elsewhere", before)


def test_unknown_unmanaged_and_malformed_events_are_never_5xx(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    before = tenant.open("noise")
    unknown = json.dumps({"entity": "event", "account_id": tenant.account_id,
                          "event": "payment.captured", "payload": {}}).encode()
    foreign = paid_event(tenant, before, notes={"order": "someone else's"})
    answers = {
        "unknown event": (tenant.post(unknown), 200),
        "unmanaged link": (tenant.post(foreign), 200),
        "no event id": (tenant.post(paid_event(tenant, before), event_id=""), 400),
        "not json": (tenant.post(b"{not json"), 400),
        "hostile link id": (tenant.post(paid_event(tenant, before, id="plink_../../x")), 400),
        "another account": (tenant.post(paid_event(tenant, before).replace(
            tenant.account_id.encode(), b"acc_Zz9Zz9Zz9Zz9Zz")), 200),
    }
    for what, (response, expected) in answers.items():
        assert response.status_code == expected, (what, response.status_code, response.text)
    outcome = answers["another account"][0].json()["outcome"]
    assert outcome == "ignored_connect_account_mismatch"
    assert answers["unknown event"][0].json()["outcome"] == "ignored_type"
    unchanged(tenant, "noise", before)


def test_a_paid_event_for_another_amount_is_ignored(razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    before = tenant.open("cheap", amount=250000)
    response = tenant.post(paid_event(tenant, before, amount=100))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored_amount_mismatch"
    unchanged(tenant, "cheap", before)


def test_a_duplicate_event_id_is_recognised_and_changes_nothing(
        razorpay_tenant: RazorpayTenant) -> None:
    tenant = razorpay_tenant
    link_id = tenant.open("twice")["status"]["sessionId"]
    paid = tenant.control.pay(link_id)
    event_id = paid["event"]["id"]
    done = tenant.wait_phase("twice", "Paid")
    assert done["status"]["history"][-1]["eventId"] == event_id
    body = tenant.control.event_payload(event_id)
    again = tenant.post(body, event_id=event_id)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    redelivered = tenant.control.deliver(event_id)
    assert redelivered and all(d["status"] == 200 for d in redelivered), redelivered
    unchanged(tenant, "twice", done)


def test_out_of_order_events_never_move_a_paid_link_back(
        razorpay_tenant: RazorpayTenant) -> None:
    """The part-payment event arrives after the paid one, and a forged-late 'expired' one
    (signed, so only Razorpay could send it): Paid stays, the expiry is not even recorded
    as unconfirmed."""
    tenant = razorpay_tenant
    link_id = tenant.open("ordered", amount=90000,
                         razorpay={"acceptPartial": True})["status"]["sessionId"]
    part = tenant.control.part_pay(link_id, 30000, wait=False)["event"]["id"]
    full = tenant.control.pay(link_id, wait=False)["event"]["id"]
    assert tenant.post(tenant.control.event_payload(full), event_id=full).status_code == 200
    paid = tenant.wait_phase("ordered", "Paid")
    late = tenant.post(tenant.control.event_payload(part), event_id=part)
    assert late.status_code == 200
    expired = paid_event(tenant, paid, status="expired").replace(
        b'"payment_link.paid"', b'"payment_link.expired"')
    assert tenant.post(expired).status_code == 200
    unchanged(tenant, "ordered", paid)
    assert [p for p, _ in history(tenant.get("ordered"))][-1] == "Paid"
