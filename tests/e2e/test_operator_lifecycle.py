"""Every phase reached through the real operator, webhook and Stripe emulator."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from tests.plugins.paykube_fixtures import (
    API_KEY,
    Stack,
    create_secret,
    phase_of,
    provider_ref,
    solo_operator,
)


def open_session(stack: Stack, namespace: str, name: str, **spec: object) -> str:
    stack.apply(namespace, name, **spec)
    session_id: str = stack.wait_phase(namespace, name, "Open")["status"]["sessionId"]
    return session_id


def history(obj: dict[str, object]) -> list[tuple[str, str]]:
    entries = obj["status"]["history"]  # type: ignore[index]
    return [(h["phase"], h["source"]) for h in entries]


def test_async_payment_goes_processing_then_paid(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "async-ok")
    stack.emulator.async_pending(session)
    processing = stack.wait_phase(namespace, "async-ok", "Processing")
    assert processing["status"]["paymentStatus"] == "unpaid"
    stack.emulator.async_succeed(session)
    paid = stack.wait_phase(namespace, "async-ok", "Paid")
    assert history(paid) == [("Pending", "operator"), ("Open", "operator"),
                             ("Processing", "webhook"), ("Paid", "webhook")]
    ready = next(c for c in paid["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Paid")


def test_async_payment_failure_ends_failed(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "async-bad")
    stack.emulator.async_pending(session)
    stack.wait_phase(namespace, "async-bad", "Processing")
    stack.emulator.async_fail(session)
    assert phase_of(stack.wait_phase(namespace, "async-bad", "Failed")) == "Failed"


def test_provider_expiry_ends_expired(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "too-late")
    stack.emulator.expire(session)
    expired = stack.wait_phase(namespace, "too-late", "Expired")
    assert history(expired)[-1] == ("Expired", "webhook")


def test_rejected_credentials_end_failed_with_error_and_event(stack: Stack,
                                                              namespace: str) -> None:
    revoked = f"sk_test_revoked_{uuid.uuid4().hex[:8]}"
    stack.emulator.revoke_key(revoked)
    create_secret(stack.kube, namespace, "revoked", revoked)
    stack.apply(namespace, "bad-key", providerRef=provider_ref("revoked"))
    failed = stack.wait_phase(namespace, "bad-key", "Failed")
    error = failed["status"]["error"]
    assert error["code"] == "CredentialsInvalid"
    assert error["providerCode"] == "api_key_expired"
    assert revoked not in json.dumps(failed)
    events = stack.kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "CredentialsInvalid" in events
    assert revoked not in events


def test_missing_credentials_secret_fails_clearly(stack: Stack, namespace: str) -> None:
    provider = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentProvider",
                "metadata": {"name": "keyless", "namespace": namespace},
                "spec": {"type": "stripe", "apiKey": {"secretRef": {"name": "keyless"}},
                         "webhook": {"register": True}}}  # its key Secret never existed
    stack.kube.kubectl("apply", "-f", "-", input=json.dumps(provider))
    stack.apply(namespace, "no-secret", providerRef=provider_ref("keyless"))
    failed = stack.wait_phase(namespace, "no-secret", "Failed")
    assert failed["status"]["error"]["code"] == "CredentialsMissing"
    assert f"Secret {namespace}/keyless not found" in failed["status"]["error"]["message"]


def test_a_missing_provider_waits_and_is_used_once_created(stack: Stack,
                                                           namespace: str) -> None:
    """GitOps may apply a session before its provider: it waits (Synced False,
    ProviderNotFound), and opens once the provider exists."""
    stack.apply(namespace, "early", providerRef=provider_ref("later"))
    waiting = stack.wait_for(namespace, "early", lambda o: any(
        c["type"] == "Synced" and c["reason"] == "ProviderNotFound"
        for c in o.get("status", {}).get("conditions", [])), what="ProviderNotFound")
    assert waiting["status"]["phase"] == "Pending"
    create_secret(stack.kube, namespace, "later", API_KEY)
    stack.wait_phase(namespace, "early", "Open", timeout=90)


def test_poll_is_the_backstop_for_lost_webhooks(stack: Stack, namespace: str) -> None:
    # Another account's key: the emulator sends no webhooks for it, only polling sees it.
    key = f"sk_test_poll_{uuid.uuid4().hex[:8]}"
    create_secret(stack.kube, namespace, "other-account", key)
    session = open_session(stack, namespace, "polled", providerRef=provider_ref("other-account"))
    stack.emulator.pay(session)
    paid = stack.wait_phase(namespace, "polled", "Paid", timeout=60)
    assert history(paid)[-1] == ("Paid", "poll")


def test_cancel_expires_the_session_and_ends_canceled(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "changed-mind")
    stack.kube.kubectl("patch", "paysess", "changed-mind", "-n", namespace, "--type=merge",
                       "-p", '{"spec": {"cancel": true}}')
    canceled = stack.wait_phase(namespace, "changed-mind", "Canceled")
    assert stack.emulator.session(session)["status"] == "expired"
    assert canceled["status"]["observedGeneration"] == canceled["metadata"]["generation"]


def test_cancel_after_payment_stays_paid(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "paid-first")
    stack.emulator.pay(session)
    stack.wait_phase(namespace, "paid-first", "Paid")
    stack.kube.kubectl("patch", "paysess", "paid-first", "-n", namespace, "--type=merge",
                       "-p", '{"spec": {"cancel": true}}')
    obj = stack.wait_for(namespace, "paid-first",
                         lambda o: o["status"].get("observedGeneration") == 2,
                         what="generation 2 observed")
    assert phase_of(obj) == "Paid"


def test_delete_open_session_expires_it_first(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "delete-me")
    stack.kube.kubectl("delete", "paysess", "delete-me", "-n", namespace, "--timeout=60s")
    assert stack.emulator.session(session)["status"] == "expired"


def test_orphan_delete_leaves_the_session_open(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "orphan", deletionPolicy="Orphan")
    stack.kube.kubectl("delete", "paysess", "orphan", "-n", namespace, "--timeout=60s")
    assert stack.emulator.session(session)["status"] == "open"


def test_delete_of_terminal_object_is_immediate(stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "done")
    stack.emulator.pay(session)
    stack.wait_phase(namespace, "done", "Paid")
    stack.kube.kubectl("delete", "paysess", "done", "-n", namespace, "--timeout=30s")
    gone = stack.kube.kubectl("get", "paysess", "done", "-n", namespace, check=False)
    assert "NotFound" in gone.stderr


def test_crash_between_create_and_status_write_makes_one_session(
    stack: Stack, tmp_path: Path,
) -> None:
    """kill -9 the operator while the emulator holds the create response; restart it."""
    with solo_operator(stack, tmp_path) as solo:
        solo.emulator.add_fault("hold", count=1, method="POST", path="/v1/checkout/sessions")
        uid = stack.apply(solo.namespace, "crashy")["metadata"]["uid"]
        solo.emulator.wait_for_held(1)
        assert solo.emulator.stats()["sessions_created"] == 1
        solo.operator.kill()
        solo.emulator.release()
        assert phase_of(stack.get(solo.namespace, "crashy")) in (None, "Pending")
        solo.restart_operator()
        opened = stack.wait_phase(solo.namespace, "crashy", "Open")
        sessions = solo.emulator.sessions(client_reference_id=uid)
        assert [s["id"] for s in sessions] == [opened["status"]["sessionId"]]
        assert solo.emulator.stats()["sessions_created"] == 1


def test_restart_resumes_open_sessions_without_new_side_effects(
    stack: Stack, tmp_path: Path,
) -> None:
    with solo_operator(stack, tmp_path) as solo:
        stack.apply(solo.namespace, "resumed")
        session = stack.wait_phase(solo.namespace, "resumed", "Open")["status"]["sessionId"]
        solo.operator.stop()
        solo.emulator.pay(session)  # no webhook endpoint here: only the resumed poll sees it
        solo.restart_operator()
        paid = stack.wait_phase(solo.namespace, "resumed", "Paid", timeout=60)
        assert history(paid)[-1] == ("Paid", "poll")
        assert solo.emulator.stats()["sessions_created"] == 1


def test_kubectl_describe_shows_transitions(stack: Stack, namespace: str) -> None:
    open_session(stack, namespace, "described")
    deadline = time.monotonic() + 10
    out = ""
    while time.monotonic() < deadline and "Pending -> Open" not in out:
        out = subprocess.run(
            [str(stack.kube.binaries.kubectl), f"--kubeconfig={stack.kube.kubeconfig}",
             "describe", "paysess", "described", "-n", namespace],
            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "Pending -> Open" in out
    # A create that succeeds at once needs no Event of its own for Pending: one call fewer
    # per session (issue 11); a create that has to wait says so (the Warning and Pending).
    assert "accepted; creating the checkout session" not in out


def warnings_about(stack: Stack, namespace: str, name: str) -> list[dict[str, str]]:
    out = stack.kube.kubectl("get", "events", "-n", namespace, "-o", "json",
                             f"--field-selector=involvedObject.name={name},type=Warning")
    return [{"reason": e["reason"], "message": e["message"]}
            for e in json.loads(out.stdout)["items"]]


def wait_warning(stack: Stack, namespace: str, name: str, reason: str, saying: str,
                 timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in warnings_about(stack, namespace, name)
                 if e["reason"] == reason and saying in e["message"]]
        if found:
            return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"no Warning {reason}: {warnings_about(stack, namespace, name)}")


def gone(stack: Stack, namespace: str, name: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = stack.kube.kubectl("get", "paysess", name, "-n", namespace, check=False)
        if "NotFound" in result.stderr:
            return True
        time.sleep(0.5)
    return False


def test_deleting_a_processing_session_waits_for_the_payment_outcome(
        stack: Stack, namespace: str) -> None:
    session = open_session(stack, namespace, "settling")
    stack.emulator.async_pending(session)
    stack.wait_phase(namespace, "settling", "Processing")
    stack.kube.kubectl("delete", "paysess", "settling", "-n", namespace, "--wait=false")
    wait_warning(stack, namespace, "settling", "DeletionAwaitsPayment", "remove the finalizer")
    time.sleep(3)  # more than one recheck (the poll minimum is 2 s here)
    held = stack.get(namespace, "settling")
    assert held["metadata"].get("deletionTimestamp"), "deletion requested"
    assert phase_of(held) == "Processing", "the finalizer holds while the payment settles"
    assert stack.emulator.session(session)["status"] == "complete"
    stack.emulator.async_succeed(session)
    paid = stack.wait_phase(namespace, "settling", "Paid", timeout=30)
    assert history(paid)[-1][0] == "Paid"
    assert gone(stack, namespace, "settling"), "released once the outcome is recorded"


def test_deleting_when_stripe_refuses_our_key_holds_until_expiry(
        stack: Stack, namespace: str) -> None:
    """A permanent error on the expire call (a revoked key; likewise a credentialsRef Secret
    deleted first with its namespace) must not release the finalizer: the session can
    still be paid at Stripe until it expires."""
    key = f"sk_test_gone_{uuid.uuid4().hex[:8]}"
    create_secret(stack.kube, namespace, "revoked-later", key)
    session = open_session(stack, namespace, "refused",
                           providerRef=provider_ref("revoked-later"))
    stack.emulator.revoke_key(key)
    stack.kube.kubectl("delete", "paysess", "refused", "-n", namespace, "--wait=false")
    wait_warning(stack, namespace, "refused", "CredentialsInvalid", "could still be paid")
    time.sleep(3)
    held = stack.get(namespace, "refused")
    assert held["metadata"].get("deletionTimestamp") and held["metadata"].get("finalizers")
    assert phase_of(held) == "Open"
    assert stack.emulator.session(session)["status"] == "open"
    # The documented escape hatch: give the session up by removing the finalizer.
    stack.kube.kubectl("patch", "paysess", "refused", "-n", namespace, "--type=merge",
                       "-p", '{"metadata": {"finalizers": null}}')
    assert gone(stack, namespace, "refused", timeout=20)
