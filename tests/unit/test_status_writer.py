"""The status writer on an in-memory API double (fast; the real API server runs in
tests/e2e): the write starts from the object at hand, a conflict re-reads, nothing is
published before it is stored, and broker confirmations ride along with the next write."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from typing import Any

import pytest

from paykube.api.types import ObjectRef, Phase, Source, Status
from paykube.errors import ApiServerUnavailable, ConflictError, PaykubeError
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
        self.down = False

    async def get_session(self, namespace: str, name: str) -> Manifest:
        self.calls.append("GET")
        return copy.deepcopy(self.obj)

    async def replace_status(self, ref: ObjectRef, resource_version: str,
                             status: dict[str, Any]) -> Manifest:
        self.calls.append("PATCH")
        if self.down:
            raise ApiServerUnavailable("down")
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
        self.connected = True  # what the webhook's writer asks before it claims a phase
        self.stall: asyncio.Event | None = None  # set: publishes wait for it
        self.sent: list[str] = []
        self.stored_when_sent: list[bool] = []

    async def publish(self, event: CloudEvent) -> None:
        if self.stall is not None:
            await self.stall.wait()
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


def paid_by_webhook(_obj: Manifest, current: Status) -> Status:
    return advance(current, ProviderObserved(
        Phase.PAID, SessionSnapshot("cs_test_1", amount_total=1999, currency="usd"),
        Source.WEBHOOK, "evt_1"), NOW)


async def open_object(kube: FakeKube) -> Manifest:
    """An Open session whose outbox is drained (the operator's work)."""
    w = writer(kube, NullPublisher())
    first = await w.apply(REF, pending)
    return (await w.apply(REF, opened, base=first.obj)).obj


def published(obj: Manifest) -> dict[str, bool]:
    return {h.phase.value: h.published for h in Status.from_dict(obj["status"]).history}


async def test_the_webhook_stores_marked_and_publishes_before_it_returns() -> None:
    """One write per event: the entry is stored marked, and its event is out (after the
    write) by the time the webhook answers."""
    kube = FakeKube()
    base = await open_object(kube)
    publisher = RecordingPublisher(kube)
    w = writer(kube, publisher)
    kube.calls.clear()
    written = await w.apply_delivered(REF, paid_by_webhook, base=base)
    assert kube.calls == ["PATCH"]
    assert written.claimed == (Phase.PAID,)
    assert published(kube.obj)["Paid"] is True
    assert publisher.sent == ["uid-1/paid"] and publisher.stored_when_sent == [True]
    await w.drain()
    assert publisher.sent == ["uid-1/paid"] and kube.calls == ["PATCH"], "nothing after"


async def test_a_broker_failure_gives_the_phase_back_to_the_outbox() -> None:
    kube = FakeKube()
    base = await open_object(kube)
    publisher = RecordingPublisher(kube, up=False)  # connected, then the send fails
    w = writer(kube, publisher)
    kube.calls.clear()
    await w.apply_delivered(REF, paid_by_webhook, base=base)
    assert kube.calls == ["PATCH", "PATCH"]
    assert [s.history[-1].published for s in kube.stored[-2:]] == [True, False]
    publisher.up = True  # the outbox (the operator's, here any writer's) sends it later
    relayed = await writer(kube, publisher).record_published(REF)
    assert relayed.after.history[-1].published and publisher.sent == ["uid-1/paid"]


async def test_a_stalled_broker_does_not_hold_the_answer() -> None:
    kube = FakeKube()
    base = await open_object(kube)
    publisher = RecordingPublisher(kube)
    publisher.stall = asyncio.Event()
    w = StatusWriter(kube, publisher, deliver_wait=0.05)  # type: ignore[arg-type]
    await w.apply_delivered(REF, paid_by_webhook, base=base)
    assert published(kube.obj)["Paid"] is False, "given back to the outbox"
    publisher.stall.set()


async def test_a_known_outage_writes_the_phase_unpublished_in_one_write() -> None:
    kube = FakeKube()
    base = await open_object(kube)
    publisher = RecordingPublisher(kube)
    publisher.connected = False
    w = writer(kube, publisher)
    kube.calls.clear()
    written = await w.apply_delivered(REF, paid_by_webhook, base=base)
    assert kube.calls == ["PATCH"] and written.claimed == ()
    assert published(kube.obj)["Paid"] is False and publisher.sent == []


async def test_when_neither_broker_nor_outbox_took_it_the_caller_must_fail() -> None:
    """The write-back fails too: a retryable error, so the webhook answers 5xx and the PSP
    delivers the event again, while the entry still says published."""
    kube = FakeKube()
    base = await open_object(kube)
    publisher = RecordingPublisher(kube, up=False)
    w = writer(kube, publisher)
    real_replace = kube.replace_status

    async def first_write_only(ref: ObjectRef, rv: str, status: dict[str, Any]) -> Manifest:
        written = await real_replace(ref, rv, status)
        kube.down = True
        return written

    kube.replace_status = first_write_only  # type: ignore[method-assign,assignment]
    with pytest.raises(PaykubeError) as raised:
        await w.apply_delivered(REF, paid_by_webhook, base=base)
    assert raised.value.retryable
    assert published(kube.obj)["Paid"] is True


async def test_a_redelivered_event_republishes_what_a_dead_writer_claimed() -> None:
    """The webhook died between its write (marked) and the publish: the PSP's next
    delivery of the event, to any process, sends the phase's event."""
    kube = FakeKube()
    base = await open_object(kube)
    dead = RecordingPublisher(kube)
    dead.stall = asyncio.Event()  # never sends: the process "dies" in the publish
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(writer(kube, dead).apply_delivered(
            REF, paid_by_webhook, base=base), 0.05)
    assert published(kube.obj)["Paid"] is True and dead.sent == []
    publisher = RecordingPublisher(kube)
    w = writer(kube, publisher)
    again = await w.apply_delivered(REF, paid_by_webhook, base=copy.deepcopy(kube.obj))
    assert again.after == again.before, "a duplicate writes nothing"
    await w.redeliver(REF, again.obj, Phase.PAID)
    assert publisher.sent == ["uid-1/paid"]
    await w.redeliver(REF, again.obj, Phase.PAID)
    assert publisher.sent == ["uid-1/paid"], "once confirmed here, not again"


async def test_redelivery_leaves_other_writers_entries_alone() -> None:
    kube = FakeKube()
    obj = await open_object(kube)  # Open was stored by the operator, published
    publisher = RecordingPublisher(kube)
    w = writer(kube, publisher)
    await w.redeliver(REF, obj, Phase.OPEN)
    await w.redeliver(REF, obj, Phase.PAID)  # not stored at all
    assert publisher.sent == []


async def test_a_deleting_object_keeps_the_outbox() -> None:
    kube = FakeKube()
    base = await open_object(kube)
    base["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    publisher = RecordingPublisher(kube)
    written = await writer(kube, publisher).apply_delivered(REF, paid_by_webhook, base=base)
    assert written.claimed == () and published(kube.obj)["Paid"] is False


async def test_a_deleting_object_read_from_the_api_server_keeps_the_outbox_too() -> None:
    """Without a cached copy the object is read first: the same rule on what was read."""
    kube = FakeKube()
    await open_object(kube)
    kube.obj["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    publisher = RecordingPublisher(kube)
    written = await writer(kube, publisher).apply_delivered(REF, paid_by_webhook)
    assert written.claimed == () and published(kube.obj)["Paid"] is False


def test_the_double_has_the_clients_signatures() -> None:
    for name in ("get_session", "replace_status"):
        assert hasattr(KubeClient, name)
