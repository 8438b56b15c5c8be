"""Payment events reach ActiveMQ: one CloudEvent per phase, and a broker outage loses none."""

from __future__ import annotations

import json
import time
from typing import Any

from paykube_dev.services import ActiveMQ
from tests.plugins.paykube_fixtures import EVENTS_QUEUE, Stack
from tests.plugins.stomp_helpers import Subscriber, subscriber


def events_of(sub: Subscriber, uid: str, count: int, timeout: float = 60.0) -> list[Any]:
    """The next `count` CloudEvents about `uid` (others, from other tests, are skipped)."""
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(found)} of {count} events for {uid}"
        frame = sub.get(timeout=remaining)
        body = json.loads(frame.body)
        if body["data"]["uid"] == uid:
            found.append(body)
    return found


def all_published(obj: dict[str, Any]) -> bool:
    return all(h["published"] for h in obj["status"].get("history", []))


def test_each_phase_is_published_once_as_a_cloudevent(stack: Stack, namespace: str,
                                                      activemq: ActiveMQ) -> None:
    with subscriber(activemq, EVENTS_QUEUE) as sub:
        uid = stack.apply(namespace, "evented")["metadata"]["uid"]
        session = stack.wait_phase(namespace, "evented", "Open")["status"]["sessionId"]
        stack.emulator.pay(session)
        stack.wait_phase(namespace, "evented", "Paid")
        events = events_of(sub, uid, 3)
        # Two writers publish independently (operator: pending, open; webhook: paid), so
        # the order may differ; each phase once is the promise.
        by_id = {e["id"]: e for e in events}
        assert sorted(by_id) == sorted([f"{uid}/pending", f"{uid}/open", f"{uid}/paid"])
        paid = by_id[f"{uid}/paid"]
        assert paid["specversion"] == "1.0"
        assert paid["type"] == "dev.paykube.paymentsession.paid"
        assert paid["source"].endswith(f"/namespaces/{namespace}/paymentsessions/evented")
        assert paid["data"]["sessionId"] == session
        stack.wait_for(namespace, "evented", all_published, what="outbox drained")


def test_broker_outage_delays_events_but_loses_none(stack: Stack, namespace: str,
                                                   activemq: ActiveMQ) -> None:
    with subscriber(activemq, EVENTS_QUEUE):
        pass  # the consumer queue now exists and keeps what arrives while we are away
    activemq.stop()
    try:
        uid = stack.apply(namespace, "outage")["metadata"]["uid"]
        session = stack.wait_phase(namespace, "outage", "Open")["status"]["sessionId"]
        result = stack.emulator.pay(session)
        assert [d["status"] for d in result["deliveries"]] == [200], "webhook still answers 2xx"
        paid = stack.wait_phase(namespace, "outage", "Paid")
        assert not any(h["published"] for h in paid["status"]["history"])
    finally:
        activemq.start()
    with subscriber(activemq, EVENTS_QUEUE) as sub:
        events = events_of(sub, uid, 3)
        assert {e["id"] for e in events} == {f"{uid}/pending", f"{uid}/open", f"{uid}/paid"}
        stack.wait_for(namespace, "outage", all_published, what="outbox drained")


def test_deletion_waits_for_the_broker_so_no_event_is_lost(stack: Stack, namespace: str,
                                                          activemq: ActiveMQ) -> None:
    with subscriber(activemq, EVENTS_QUEUE):
        pass
    uid = stack.apply(namespace, "deleted-in-outage", deletionPolicy="Orphan")["metadata"]["uid"]
    stack.wait_phase(namespace, "deleted-in-outage", "Open")
    stack.wait_for(namespace, "deleted-in-outage", all_published, what="outbox drained")
    activemq.stop()
    try:
        session = stack.get(namespace, "deleted-in-outage")["status"]["sessionId"]
        stack.emulator.pay(session)
        stack.wait_phase(namespace, "deleted-in-outage", "Paid")
        stack.kube.kubectl("delete", "paysess", "deleted-in-outage", "-n", namespace,
                           "--wait=false")
        time.sleep(3)
        held = stack.get(namespace, "deleted-in-outage")
        assert held["metadata"].get("deletionTimestamp"), "kept while its event is unsent"
    finally:
        activemq.start()
    with subscriber(activemq, EVENTS_QUEUE) as sub:
        ids = [e["id"] for e in events_of(sub, uid, 3)]  # Pending, Open were queued before
        assert f"{uid}/paid" in ids, "the Paid event arrived after the broker came back"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        gone = stack.kube.kubectl("get", "paysess", "deleted-in-outage", "-n", namespace,
                                  check=False)
        if "NotFound" in gone.stderr:
            return
        time.sleep(0.5)
    raise AssertionError("the object was not deleted once its events were out")
