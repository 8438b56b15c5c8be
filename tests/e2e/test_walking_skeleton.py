"""The walking skeleton on the real pieces: operator creates the Stripe session and writes
Open; a signed checkout.session.completed from the emulator makes the webhook write Paid."""

from __future__ import annotations

import re

import httpx

from tests.plugins.paykube_fixtures import METRICS_AUTH, Stack


def applied_count(stack: Stack) -> float:
    text = httpx.get(f"{stack.webhook.url}/metrics", auth=METRICS_AUTH).text
    found = re.search(r'^paykube_webhook_requests_total\{outcome="applied"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_payment_goes_open_then_paid_through_a_signed_webhook(stack: Stack,
                                                              namespace: str) -> None:
    created = stack.apply(namespace, "order-1001", amount=4200, currency="eur")
    uid = created["metadata"]["uid"]

    opened = stack.wait_phase(namespace, "order-1001", "Open")
    status = opened["status"]
    assert status["sessionId"].startswith("cs_")
    assert status["url"].startswith("https://")
    assert status["amountTotal"] == 4200

    sessions = stack.emulator.sessions(client_reference_id=uid)
    assert [s["id"] for s in sessions] == [status["sessionId"]], "exactly one Stripe session"
    session = sessions[0]
    assert session["metadata"]["paykube_uid"] == uid
    assert session["metadata"]["paykube_namespace"] == namespace
    requests = stack.emulator.requests("/v1/checkout/sessions")
    assert any(r.get("idempotency_key") == f"paykube:{uid}:create" for r in requests)

    applied_before = applied_count(stack)
    # The operator's backstop poll must not beat the webhook to Paid: hold its reads of this
    # session until the webhook has written.
    stack.emulator.add_fault("hold", count=None, method="GET",
                             path=f"/v1/checkout/sessions/{status['sessionId']}")
    try:
        result = stack.emulator.pay(status["sessionId"])
        assert result["deliveries"] and all(d["status"] == 200 for d in result["deliveries"])
        paid = stack.wait_phase(namespace, "order-1001", "Paid", timeout=30)
    finally:
        stack.emulator.clear_faults()
        stack.emulator.release()
    assert paid["status"]["paymentIntentId"].startswith("pi_")
    webhook_entries = [h for h in paid["status"]["history"] if h["source"] == "webhook"]
    assert [h["phase"] for h in webhook_entries] == ["Paid"]
    assert webhook_entries[0]["eventId"] == result["event"]["id"]
    assert session["metadata"]["paykube_name"] == "order-1001"

    operator_metrics = httpx.get(f"http://127.0.0.1:{stack.operator.metrics_port}/metrics").text
    assert 'paykube_phase_transitions_total{from_phase="Pending",source="operator",' \
           'to_phase="Open"}' in operator_metrics
    assert 'paykube_provider_calls_total{operation="create",outcome="ok",provider="stripe"}' \
           in operator_metrics
    assert applied_count(stack) == applied_before + 1
