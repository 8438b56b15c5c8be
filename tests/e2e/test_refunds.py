"""Refunds through the real operator, webhook, control plane and Stripe emulator."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.plugins.paykube_fixtures import Manifest, Stack

REFUND_API = "payments.paykube.dev/v1alpha1"


def paid_session(stack: Stack, namespace: str, name: str, amount: int = 4200) -> Manifest:
    stack.apply(namespace, name, amount=amount)
    opened = stack.wait_phase(namespace, name, "Open")
    stack.emulator.pay(opened["status"]["sessionId"])
    return stack.wait_phase(namespace, name, "Paid")


def apply_refund(stack: Stack, namespace: str, name: str, session: str,
                 amount: int | None = None, **spec: Any) -> None:
    body: dict[str, Any] = {"apiVersion": REFUND_API, "kind": "PaymentRefund",
                            "metadata": {"name": name, "namespace": namespace},
                            "spec": {"sessionRef": {"name": session}, **spec}}
    if amount is not None:
        body["spec"]["amount"] = amount
    stack.kube.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_refund(stack: Stack, namespace: str, name: str) -> Manifest:
    out = stack.kube.kubectl("get", "paymentrefund", name, "-n", namespace, "-o", "json")
    result: Manifest = json.loads(out.stdout)
    return result


def wait_refund(stack: Stack, namespace: str, name: str, phase: str,
                timeout: float = 60.0) -> Manifest:
    deadline = time.monotonic() + timeout
    obj: Manifest = {}
    while time.monotonic() < deadline:
        obj = get_refund(stack, namespace, name)
        if obj.get("status", {}).get("phase") == phase:
            return obj
        time.sleep(0.3)
    raise AssertionError(f"refund {namespace}/{name}: phase {phase} not reached in "
                         f"{timeout}s; last status: {json.dumps(obj.get('status'), indent=1)}")


def condition(obj: Manifest, type_: str) -> dict[str, Any] | None:
    return next((c for c in obj["status"].get("conditions") or () if c["type"] == type_),
                None)


def wait_refunded(stack: Stack, namespace: str, name: str, amount: int) -> Manifest:
    return stack.wait_for(namespace, name,
                          lambda o: o.get("status", {}).get("amountRefunded") == amount,
                          what=f"amountRefunded {amount}")


def test_partial_then_full_refund_keep_the_session_paid(stack: Stack, namespace: str) -> None:
    session = paid_session(stack, namespace, "order-1", amount=4200)
    intent = session["status"]["paymentIntentId"]
    apply_refund(stack, namespace, "shipping", "order-1", amount=500,
                 reason="requested_by_customer", metadata={"ticket": "SUP-1"})
    first = wait_refund(stack, namespace, "shipping", "Succeeded")
    assert first["status"]["amount"] == 500
    assert first["status"]["refundId"].startswith("re_")
    partly = wait_refunded(stack, namespace, "order-1", 500)
    assert partly["status"]["phase"] == "Paid"
    refunded = condition(partly, "Refunded")
    assert refunded is not None
    assert (refunded["status"], refunded["reason"]) == ("False", "PartiallyRefunded")
    # Without an amount: the whole rest.
    apply_refund(stack, namespace, "the-rest", "order-1")
    rest = wait_refund(stack, namespace, "the-rest", "Succeeded")
    assert rest["status"]["amount"] == 3700
    full = wait_refunded(stack, namespace, "order-1", 4200)
    assert full["status"]["phase"] == "Paid"
    refunded = condition(full, "Refunded")
    assert refunded is not None and (refunded["status"], refunded["reason"]) == (
        "True", "FullyRefunded")
    records = {r["name"]: r for r in full["status"]["refunds"]}
    assert {n: (r["amount"], r["phase"]) for n, r in records.items()} == {
        "shipping": (500, "Succeeded"), "the-rest": (3700, "Succeeded")}
    at_stripe = stack.emulator.refunds(intent)
    assert sorted(r["amount"] for r in at_stripe) == [500, 3700]
    assert {r["metadata"].get("paykube_name") for r in at_stripe} == {"shipping", "the-rest"}
    assert next(r for r in at_stripe if r["amount"] == 500)["metadata"]["ticket"] == "SUP-1"


def test_refusals_before_any_provider_call(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, "still-open")
    stack.wait_phase(namespace, "still-open", "Open")
    apply_refund(stack, namespace, "too-early", "still-open", amount=100)
    early = wait_refund(stack, namespace, "too-early", "Failed")
    assert early["status"]["error"]["code"] == "SessionNotPaid"
    assert "refundId" not in early["status"] or early["status"]["refundId"] is None

    session = paid_session(stack, namespace, "small", amount=1000)
    apply_refund(stack, namespace, "too-much", "small", amount=1001)
    much = wait_refund(stack, namespace, "too-much", "Failed")
    assert much["status"]["error"]["code"] == "AmountExceedsRefundable"
    assert "1000" in much["status"]["error"]["message"]

    apply_refund(stack, namespace, "nobody", "no-such-session", amount=1)
    nobody = wait_refund(stack, namespace, "nobody", "Failed")
    assert nobody["status"]["error"]["code"] == "SessionNotFound"
    ready = condition(nobody, "Ready")
    assert ready is not None and ready["reason"] == "SessionNotFound"
    assert stack.emulator.refunds(session["status"]["paymentIntentId"]) == []


def test_two_refunds_racing_for_the_same_rest_exactly_one_succeeds(stack: Stack,
                                                                   namespace: str) -> None:
    session = paid_session(stack, namespace, "contested", amount=2000)
    intent = session["status"]["paymentIntentId"]
    apply_refund(stack, namespace, "part", "contested", amount=1200)
    wait_refund(stack, namespace, "part", "Succeeded")
    # Both ask for the last 800 at once.
    racers = [threading.Thread(target=apply_refund,
                               args=(stack, namespace, name, "contested", 800))
              for name in ("racer-a", "racer-b")]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join()
    phases = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        phases = {n: get_refund(stack, namespace, n).get("status", {}).get("phase")
                  for n in ("racer-a", "racer-b")}
        if all(p in ("Succeeded", "Failed") for p in phases.values()):
            break
        time.sleep(0.3)
    assert sorted(phases.values()) == ["Failed", "Succeeded"], phases
    loser = next(n for n, p in phases.items() if p == "Failed")
    assert get_refund(stack, namespace, loser)["status"]["error"]["code"] == \
        "AmountExceedsRefundable"
    assert sorted(r["amount"] for r in stack.emulator.refunds(intent)) == [800, 1200]
    assert wait_refunded(stack, namespace, "contested", 2000)["status"]["phase"] == "Paid"
