"""The status writer on an in-memory API double (fast; the real API server runs in
tests/e2e): the write starts from the object at hand, a conflict re-reads, nothing is
published before it is stored, and broker confirmations ride along with the next write."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import pytest

from paykube.api.types import ObjectRef, Phase, Source, Status
from paykube.errors import ConflictError
from paykube.events.cloudevent import CloudEvent
from paykube.events.publisher import BrokerUnavailableError, NullPublisher
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.writer import StatusWriter
from paykube.lifecycle import ProviderObserved, SessionSnapshot, advance, initial

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
REF = ObjectRef("shop", "order", "uid-1")


class FakeKube:
    """The two calls the writer makes, with the API server's resourceVersion precondition."""

    def __init__(self) -> None:
        self.version = 1
        self.obj: Manifest = {"metadata": {"namespace": "shop", "name": "order", "uid": "uid-1",
                                           "resourceVersion": "1", "generation": 1},
                              "spec": {"amount": 1999, "currency": "usd"}, "status": {}}
        self.calls: list[str] = []
        self.stored: list[Status] = []

    async def get_session(self, namespace: str, name: str) -> Manifest:
        self.calls.append("GET")
        return copy.deepcopy(self.obj)

    async def replace_status(self, ref: ObjectRef, resource_version: str,
                             status: dict[str, Any]) -> Manifest:
        self.calls.append("PATCH")
        if resource_version != self.obj["metadata"]["resourceVersion"]:
            raise ConflictError("conflict")
        self.version += 1
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        self.obj["status"] = status
        self.stored.append(Status.from_dict(status))
        return copy.deepcopy(self.obj)

    def other_writer(self, status: Status) -> None:
        """Someone else wrote meanwhile (the other program)."""
        self.version += 1
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        self.obj["status"] = status.to_dict()


class RecordingPublisher:
    def __init__(self, kube: FakeKube, *, up: bool = True) -> None:
        self.kube, self.up = kube, up
        self.sent: list[str] = []
        self.stored_when_sent: list[bool] = []

    async def publish(self, event: CloudEvent) -> None:
        if not self.up:
            raise BrokerUnavailableError("down")
        phase = Phase(event.data["phase"])
        # Never an event for a state that is not stored.
        self.stored_when_sent.append(any(phase in [h.phase for h in s.history]
                                         for s in self.kube.stored))
        self.sent.append(event.id)

    async def aclose(self) -> None:
        return None


def writer(kube: FakeKube, publisher: Any) -> StatusWriter:
    return StatusWriter(kube, publisher)  # type: ignore[arg-type]


def pending(_obj: Manifest, current: Status) -> Status:
    return initial(NOW, 1, "2026-11-30T12:00:00Z") if not current.history else current


def opened(_obj: Manifest, current: Status) -> Status:
    return advance(current, ProviderObserved(
        Phase.OPEN, SessionSnapshot("cs_test_1", url="https://pay.example/1"),
        Source.OPERATOR, authoritative=True), NOW)


async def test_the_object_at_hand_is_the_base_no_read() -> None:
    kube = FakeKube()
    w = writer(kube, NullPublisher())
    first = await w.apply(REF, pending, base=await kube.get_session("shop", "order"))
    kube.calls.clear()
    second = await w.apply(REF, opened, base=first.obj)
    assert kube.calls == ["PATCH"]
    assert second.after.phase is Phase.OPEN and second.moved
    # No broker: entries are marked published in the same write.
    assert all(h.published for h in second.after.history)


async def test_a_conflict_rereads_and_decides_again() -> None:
    kube = FakeKube()
    w = writer(kube, NullPublisher())
    stale = await kube.get_session("shop", "order")
    kube.other_writer(initial(NOW, 1, "2026-11-30T12:00:00Z"))
    kube.calls.clear()
    written = await w.apply(REF, opened, base=stale)
    assert kube.calls == ["PATCH", "GET", "PATCH"]
    assert [h.phase for h in written.after.history] == [Phase.PENDING, Phase.OPEN]


async def test_nothing_to_change_writes_nothing() -> None:
    kube = FakeKube()
    w = writer(kube, NullPublisher())
    written = await w.apply(REF, pending)
    kube.calls.clear()
    again = await w.apply(REF, pending, base=written.obj)
    assert kube.calls == [] and again.after == again.before


async def test_a_replaced_object_is_not_found() -> None:
    kube = FakeKube()
    with pytest.raises(NotFound):
        await writer(kube, NullPublisher()).apply(ObjectRef("shop", "order", "other"), pending)


async def test_events_follow_the_write_and_confirmations_ride_along() -> None:
    kube = FakeKube()
    publisher = RecordingPublisher(kube)
    w = writer(kube, publisher)
    first = await w.apply(REF, pending)
    await w.drain()
    assert publisher.sent == ["uid-1/pending"] and publisher.stored_when_sent == [True]
    assert not first.after.history[0].published  # confirmed after the write
    second = await w.apply(REF, opened, base=first.obj)
    await w.drain()
    # Pending's confirmation is folded into the Open write; Open's waits for the next one.
    assert [h.published for h in second.after.history] == [True, False]
    assert publisher.sent == ["uid-1/pending", "uid-1/open"]
    marks = await w.record_published(REF, second.obj)
    assert all(h.published for h in marks.after.history)
    assert publisher.sent == ["uid-1/pending", "uid-1/open"], "no event sent twice"


async def test_a_broker_outage_leaves_the_outbox_for_later() -> None:
    kube = FakeKube()
    publisher = RecordingPublisher(kube, up=False)
    w = writer(kube, publisher)
    written = await w.apply(REF, pending)
    await w.drain()
    assert publisher.sent == []
    kube.calls.clear()
    after = await w.record_published(REF, written.obj)
    assert kube.calls == [] and not after.after.history[0].published
    publisher.up = True
    after = await w.record_published(REF)
    assert after.after.history[0].published and publisher.sent == ["uid-1/pending"]


async def test_concurrent_writers_converge() -> None:
    """Two programs write from the same stale object: both land, in either order, and the
    history holds each phase once."""
    kube = FakeKube()
    w1, w2 = writer(kube, NullPublisher()), writer(kube, NullPublisher())
    base = await kube.get_session("shop", "order")

    def paid(_obj: Manifest, current: Status) -> Status:
        return advance(current, ProviderObserved(
            Phase.PAID, SessionSnapshot("cs_test_1", amount_total=1999, currency="usd"),
            Source.POLL, authoritative=True), NOW)

    first = await w1.apply(REF, pending, base=base)
    await asyncio.gather(w1.apply(REF, opened, base=first.obj),
                         w2.apply(REF, paid, base=first.obj))
    final = Status.from_dict(kube.obj["status"])
    assert final.phase is Phase.PAID
    phases = [h.phase for h in final.history]
    assert len(phases) == len(set(phases))


def test_the_double_has_the_clients_signatures() -> None:
    for name in ("get_session", "replace_status"):
        assert hasattr(KubeClient, name)
