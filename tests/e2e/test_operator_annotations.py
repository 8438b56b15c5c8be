"""A PaymentSession's author can write any annotation, paykube's and kopf's bookkeeping
included: the create handler's progress record (`paykube.dev/reconcile-create`, whose
presence tells the diff base that a create is still being retried) and kopf's record of
the handled spec (`paykube.dev/last-handled-configuration`). Neither moves an Open session:
no second provider session, the same sessionId and url, and it is still Paid when paid.

Both through the shared operator, which has just handled the create, and through an
operator started afresh, which knows the session from its body alone. A value that is not
JSON once made kopf fail at every event of the object (no polls, no finalizer): the
session was never seen Paid without a webhook.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from paykube.operator.diffbase import CREATE_HANDLER, PREFIX
from paykube_dev.stripe_emulator import EmulatorControl
from tests.plugins.paykube_fixtures import Manifest, Stack, solo_operator

PROGRESS = f"{PREFIX}/{CREATE_HANDLER}"
RECORD = f"{PREFIX}/last-handled-configuration"
# kopf's own shape of a create handler that failed once and is to be run again now.
RETRYING = '{"started":"2020-01-01T00:00:00.000000+00:00","purpose":"create","retries":1}'
SETTLE = 3.0  # more than the poll minimum (2 s): the operator has seen every write by then


def creates(emulator: EmulatorControl, uid: str) -> list[dict[str, object]]:
    """Every create request for this object (replays of its idempotency key included)."""
    return [r for r in emulator.requests("/v1/checkout/sessions", method="POST")
            if uid in str(r.get("idempotency_key"))]


def annotate(stack: Stack, namespace: str, name: str, key: str, value: str) -> None:
    stack.kube.kubectl("annotate", "--overwrite", "paysess", name, "-n", namespace,
                       f"{key}={value}")


def assert_unmoved(stack: Stack, emulator: EmulatorControl, namespace: str, name: str,
                   opened: Manifest) -> Manifest:
    uid, status = opened["metadata"]["uid"], opened["status"]
    now = stack.get(namespace, name)
    assert (now["status"]["phase"], now["status"]["sessionId"], now["status"]["url"]) == (
        "Open", status["sessionId"], status["url"])
    assert [h["phase"] for h in now["status"]["history"]] == ["Pending", "Open"]
    assert len(creates(emulator, uid)) == 1
    assert [s["id"] for s in emulator.sessions(client_reference_id=uid)] == [
        status["sessionId"]]
    return now


def assert_paid_once(stack: Stack, emulator: EmulatorControl, namespace: str, name: str,
                     opened: Manifest) -> None:
    emulator.pay(opened["status"]["sessionId"])
    paid = stack.wait_phase(namespace, name, "Paid", timeout=60)
    assert (paid["status"]["sessionId"], paid["status"]["url"]) == (
        opened["status"]["sessionId"], opened["status"]["url"])
    assert [h["phase"] for h in paid["status"]["history"]] == ["Pending", "Open", "Paid"]
    assert len(creates(emulator, opened["metadata"]["uid"])) == 1


def test_a_create_progress_annotation_on_an_open_session_moves_nothing(
        stack: Stack, namespace: str) -> None:
    stack.apply(namespace, "marked")
    opened = stack.wait_phase(namespace, "marked", "Open")
    annotate(stack, namespace, "marked", PROGRESS, RETRYING)
    time.sleep(SETTLE)
    assert_unmoved(stack, stack.emulator, namespace, "marked", opened)
    assert_paid_once(stack, stack.emulator, namespace, "marked", opened)


@pytest.mark.parametrize(("key", "value"), [
    (PROGRESS, RETRYING),
    (PROGRESS, "not json"),
    (RECORD, '{"spec":{"amount":1,"currency":"usd"}}'),
    (RECORD, "not json"),
], ids=["progress", "progress-garbage", "record-forged", "record-garbage"])
def test_after_a_restart_forged_bookkeeping_moves_nothing(
        stack: Stack, tmp_path: Path, key: str, value: str) -> None:
    """The operator that starts afresh does not know that it handled the create: the
    annotations are all it has to go by. The session still ends Paid, then goes when
    deleted (the finalizer is not held up by them)."""
    with solo_operator(stack, tmp_path) as solo:
        stack.apply(solo.namespace, "forged")
        opened = stack.wait_phase(solo.namespace, "forged", "Open")
        annotate(stack, solo.namespace, "forged", key, value)
        time.sleep(SETTLE)
        solo.restart_operator()
        time.sleep(SETTLE)
        assert_unmoved(stack, solo.emulator, solo.namespace, "forged", opened)
        assert_paid_once(stack, solo.emulator, solo.namespace, "forged", opened)
        stack.kube.kubectl("delete", "paysess", "forged", "-n", solo.namespace,
                           "--timeout=30s")
        assert solo.emulator.stats()["create_requests"] == 1
