"""The refund outbox on a real kube-apiserver and a real ActiveMQ: a phase event the broker
confirmed is not sent again from a body read before its mark was written.

This is how a full run once saw `pending` twice: the write of Pending queued a publish with
its body, the write of Succeeded queued another with its own (still unmarked) body, and the
second ran after the first had published and marked Pending.
"""

from __future__ import annotations

import asyncio
import json
import queue

import pytest

from paykube.api.refunds import RefundHistoryEntry, RefundStatus
from paykube.api.types import ObjectRef, RefundPhase, Source
from paykube.events.stomp import StompPublisher
from paykube.kube.client import KubeClient
from paykube.kube.refund_writer import RefundWriter
from paykube_dev.kube import ControlPlane
from paykube_dev.services import ActiveMQ
from tests.integration.test_crd import EXAMPLES, apply
from tests.plugins.stomp_helpers import Subscriber, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

AT = "2026-11-29T12:00:00Z"


@pytest.fixture
def namespace(unmanaged_namespace: str) -> str:
    return unmanaged_namespace


async def refund_object(kube: ControlPlane, client: KubeClient, namespace: str) -> ObjectRef:
    apply(kube, namespace, (EXAMPLES / "refunds" / "paymentrefund-partial.yaml").read_text())
    got = json.loads(kube.kubectl("get", "paymentrefund", "order-1001-shipping", "-n",
                                  namespace, "-o", "json").stdout)
    return ObjectRef(namespace, "order-1001-shipping", got["metadata"]["uid"])


def with_phase(status: RefundStatus, phase: RefundPhase) -> RefundStatus:
    return status.with_changes(phase=phase, history=(
        *status.history, RefundHistoryEntry(phase, AT, Source.OPERATOR, None, False)))


def drained(sub: Subscriber) -> list[str]:
    """Every event on the queue now, by phase (bounded: stops at the first quiet second)."""
    phases: list[str] = []
    while True:
        try:
            frame = sub.get(timeout=1.0)
        except queue.Empty:
            return phases
        phases.append(json.loads(frame.body)["data"]["phase"])


async def test_a_stale_body_does_not_send_a_confirmed_phase_again(
        kube: ControlPlane, kube_client: KubeClient, namespace: str, activemq: ActiveMQ,
        topic: tuple[str, str], publisher: StompPublisher) -> None:
    ref = await refund_object(kube, kube_client, namespace)
    writer = RefundWriter(kube_client, publisher)
    with subscriber(activemq, topic[1]) as sub:
        pending = await writer.apply(ref, lambda _o, s: with_phase(s, RefundPhase.PENDING))
        succeeded = await writer.apply(ref, lambda _o, s: with_phase(s, RefundPhase.SUCCEEDED))
        await writer.drain()
        # Both bodies, read before any mark, handed over again (the outbox timer's case).
        await writer.record_published(ref, pending.obj)
        await asyncio.gather(writer.record_published(ref, succeeded.obj),
                             writer.record_published(ref, pending.obj))
        sent = drained(sub)
    assert sent == [RefundPhase.PENDING.value, RefundPhase.SUCCEEDED.value]
    stored = RefundStatus.from_dict((await writer.get(namespace, ref.name))["status"])
    assert [(h.phase, h.published) for h in stored.history] == [
        (RefundPhase.PENDING, True), (RefundPhase.SUCCEEDED, True)]
