"""Polling alone ends async payments: no webhook is delivered for these sessions.

The shared stack's emulator delivers webhooks only for the default account's key, so
sessions of another account (a PaymentProvider in spec.providerRef) are seen by polling alone,
as after a lost webhook. After an async failure Stripe still reports the session
complete/unpaid; only its PaymentIntent tells, and the poll expands it.
"""

from __future__ import annotations

import uuid

from tests.plugins.paykube_fixtures import Manifest, Stack, create_secret, provider_ref

SECRET = "unhooked-account"


def open_unhooked(stack: Stack, namespace: str, name: str) -> str:
    create_secret(stack.kube, namespace, SECRET, f"sk_test_poll_{uuid.uuid4().hex[:8]}")
    stack.apply(namespace, name, providerRef=provider_ref(SECRET))
    session_id: str = stack.wait_phase(namespace, name, "Open")["status"]["sessionId"]
    return session_id


def history(obj: Manifest) -> list[tuple[str, str]]:
    return [(h["phase"], h["source"]) for h in obj["status"]["history"]]


def no_deliveries(stack: Stack, session_id: str) -> None:
    events = stack.emulator.events(session_id=session_id)
    assert events, "the emulator recorded the session's events"
    for event in events:
        assert stack.emulator.deliveries(event["id"]) == [], "a webhook was delivered"


def test_async_failure_reaches_failed_through_polling(stack: Stack, namespace: str) -> None:
    session = open_unhooked(stack, namespace, "async-fail-polled")
    stack.emulator.async_pending(session)
    stack.wait_phase(namespace, "async-fail-polled", "Processing")
    stack.emulator.async_fail(session)
    assert stack.emulator.session(session)["status"] == "complete"  # unchanged by the failure
    failed = stack.wait_phase(namespace, "async-fail-polled", "Failed", timeout=60)
    assert history(failed) == [("Pending", "operator"), ("Open", "operator"),
                               ("Processing", "poll"), ("Failed", "poll")]
    assert failed["status"]["paymentStatus"] == "unpaid"
    assert failed["status"]["paymentIntentId"].startswith("pi_")
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PaymentFailed")
    no_deliveries(stack, session)


def test_async_success_reaches_paid_through_polling(stack: Stack, namespace: str) -> None:
    session = open_unhooked(stack, namespace, "async-ok-polled")
    stack.emulator.async_pending(session)
    stack.wait_phase(namespace, "async-ok-polled", "Processing")
    stack.emulator.async_succeed(session)
    paid = stack.wait_phase(namespace, "async-ok-polled", "Paid", timeout=60)
    assert history(paid)[-2:] == [("Processing", "poll"), ("Paid", "poll")]
    assert paid["status"]["paymentStatus"] == "paid"
    no_deliveries(stack, session)
