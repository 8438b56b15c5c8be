"""The one place where a PaymentSession's status changes.

Both writers (the operator's reconciler and the webhook) call `StatusWriter.apply`, which
owns, in this order:

1. the conditional write: `decide(object, current) -> next` applied to the object the
   caller already holds (kopf's body, the previous write's answer), written with its
   resourceVersion as precondition; only after a 409 is the object read again;
2. outbox settling: with no broker, new history entries are marked published in the same
   write; with one, entries the broker confirmed earlier (remembered in memory) are folded
   into this write instead of a write of their own;
3. after the write, off the caller's critical path: the transition metric, the Kubernetes
   Event and publishing. A phase event is published only after the status that holds it
   is stored, so no event is published for a state that was never stored; and a stored
   entry stays unpublished in `history[].published` until the broker confirmed it, so the
   outbox timer delivers it if this process dies first: nothing is lost.

The webhook takes a shorter path, `apply_delivered`: the PSP's redelivery is its outbox.
New phase entries are written already marked published (one write), the events are
published before the caller answers, and only if the broker does not confirm them are the
marks written back to unpublished (the operator's outbox relays them then). A crash between
the write and the publish leaves the PSP without a 2xx, so it delivers the event again, and
the duplicate republishes the phase (`docs/architecture.md`, "Outbox").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paykube.api.types import HistoryEntry, ObjectRef, Phase, Source, Status
from paykube.errors import ConflictError, PaykubeError
from paykube.events.outbox import publish_pending
from paykube.events.publisher import EventPublisher
from paykube.events.relay import broker_state, needs_relay, settle_outbox
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.confirmed import Confirmed, KeyedLocks
from paykube.kube.status import ref_of
from paykube.lifecycle import mark_published, unpublished

log = logging.getLogger(__name__)

Decide = Callable[[Manifest, Status], Status]
# (ref, before, after, written object): the transition's side effects (metric, Event).
OnTransition = Callable[[ObjectRef, Status, Status, Manifest], Awaitable[None]]
_CONFIRMED_KEPT = 65536


@dataclass(frozen=True)
class Written:
    obj: Manifest
    before: Status
    after: Status
    # Phases written as published before their events were sent (`apply_delivered`).
    claimed: tuple[Phase, ...] = ()

    @property
    def moved(self) -> bool:
        return self.after.phase is not self.before.phase


@dataclass
class StatusWriter:
    kube: KubeClient
    publisher: EventPublisher
    on_transition: OnTransition | None = None
    include_url: bool = False
    # After a write that stored new phase events: publish them and write the marks at once
    # (the webhook: a second write, off the sender's path), or only publish and let the
    # marks ride along with the object's next write or the outbox timer (the operator).
    record_after_write: bool = False
    on_publish: Callable[[str], None] | None = None  # "published" | "deferred", per attempt
    attempts: int = 10
    # How long `apply_delivered` waits for the broker's receipt before it gives the events
    # to the outbox instead (the PSPs time a delivery out after a few seconds).
    deliver_wait: float = 3.0
    _confirmed: Confirmed[Phase] = field(default_factory=lambda: Confirmed(_CONFIRMED_KEPT))
    _publishing: KeyedLocks = field(default_factory=KeyedLocks)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def apply(self, ref: ObjectRef, decide: Decide, *,
                    base: Manifest | None = None, claim: bool = False) -> Written:
        """Write `decide(object, current)`; NotFound when the object is gone or replaced
        (another uid). `base` is the object as the caller holds it: no read unless the
        write conflicts. `claim`: new phase entries are written marked published, and the
        caller publishes them (`apply_delivered`)."""
        obj = base
        for _ in range(self.attempts):
            if obj is None:
                obj = await self.kube.get_session(ref.namespace, ref.name)
            if ref.uid and obj["metadata"]["uid"] != ref.uid:
                raise NotFound(f"{ref.namespace}/{ref.name} now has a different uid")
            current = Status.from_dict(obj.get("status"))
            proposed = self._settle(ref.uid, decide(obj, current))
            if proposed == current:
                return Written(obj, current, current)
            claimed: tuple[Phase, ...] = ()
            # A deletion's finalizer waits for unpublished entries only: no claims there.
            if claim and not obj["metadata"].get("deletionTimestamp"):
                claimed = tuple(h.phase for h in proposed.history[len(current.history):]
                                if not h.published)
                proposed = _with_published(proposed, claimed, True)
            try:
                written = await self.kube.replace_status(
                    ref_of(obj), obj["metadata"]["resourceVersion"], proposed.to_dict())
            except ConflictError:
                obj = None  # someone wrote first: read theirs and decide again
                continue
            result = Written(written, current, proposed, claimed)
            self._after(ref, result)
            return result
        raise ConflictError(f"{ref.namespace}/{ref.name}: gave up after "
                            f"{self.attempts} conflicts")

    async def apply_delivered(self, ref: ObjectRef, decide: Decide, *,
                              base: Manifest | None = None) -> Written:
        """The webhook's write: what it stores is published before this returns, or given
        to the outbox. Raises a retryable error when neither the broker nor the outbox took
        a phase, so that the caller answers 5xx and the PSP delivers the event again."""
        claim = broker_state(self.publisher) == "connected"
        written = await self.apply(ref, decide, base=base, claim=claim)
        if written.claimed:
            await self._deliver(ref, written.obj, written.claimed)
        return written

    async def redeliver(self, ref: ObjectRef, obj: Manifest, phase: Phase) -> None:
        """A PSP event for a phase already stored: if a webhook stored it marked published
        and this process has not seen the broker confirm it, its writer may have died
        before publishing, so publish it again (the same CloudEvent id; consumers drop
        duplicates) or give it to the outbox."""
        entry = _entry(Status.from_dict(obj.get("status")), phase)
        if entry is None or not entry.published or entry.source is not Source.WEBHOOK \
                or not needs_relay(self.publisher) or (ref.uid, phase) in self._confirmed:
            return
        await self._deliver(ref, obj, (phase,))

    async def _deliver(self, ref: ObjectRef, obj: Manifest,
                       phases: tuple[Phase, ...]) -> None:
        """Publish `phases`, stored as published; give back to the outbox (write them
        unpublished) what the broker did not confirm within `deliver_wait`."""
        sent: tuple[Phase, ...] = ()
        if broker_state(self.publisher) == "connected":
            status = _with_published(Status.from_dict(obj.get("status")), phases, False)
            with contextlib.suppress(TimeoutError):
                sent = await asyncio.wait_for(
                    self._publish_status(ref, obj, status, phases), self.deliver_wait)
        unsent = tuple(p for p in phases if p not in sent)
        if not unsent:
            return

        def give_back(_obj: Manifest, current: Status) -> Status:
            return _with_published(
                current, tuple(p for p in unsent if (ref.uid, p) not in self._confirmed),
                False)

        await self.apply(ref, give_back, base=obj)

    def _settle(self, uid: str, status: Status) -> Status:
        status = settle_outbox(status, self.publisher)
        for entry in unpublished(status):
            if (uid, entry.phase) in self._confirmed:
                status = mark_published(status, entry.phase)
        return status

    def _after(self, ref: ObjectRef, result: Written) -> None:
        """The transition's metric and Event, and publishing: after the write, never before,
        and not on the caller's path."""
        work: list[Awaitable[None]] = []
        if result.moved and self.on_transition is not None:
            work.append(self.on_transition(ref, result.before, result.after, result.obj))
        # Each writer publishes the phases it stored; older unconfirmed ones are the outbox
        # timer's (the writer that stored them may still be sending them).
        new = tuple(h.phase for h in result.after.history[len(result.before.history):]
                    if not h.published)
        if needs_relay(self.publisher) and new:
            work.append(self._record_quietly(ref, result.obj, new) if self.record_after_write
                        else self._publish_quietly(ref, result.obj, new))
        if work:
            task = asyncio.create_task(self._run(work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(work: list[Awaitable[None]]) -> None:
        for item in work:
            try:
                await item
            except PaykubeError as exc:  # the status is the record; the rest is retried
                log.warning("after-write step failed: %s", exc.message)

    async def _publish_quietly(self, ref: ObjectRef, obj: Manifest,
                               phases: tuple[Phase, ...]) -> None:
        await self.publish(ref, obj, phases)

    async def _record_quietly(self, ref: ObjectRef, obj: Manifest,
                              phases: tuple[Phase, ...]) -> None:
        # Deleted meanwhile: its finalizer waited for the events.
        with contextlib.suppress(NotFound):
            await self.record_published(ref, obj, phases)

    async def publish(self, ref: ObjectRef, obj: Manifest,
                      only: tuple[Phase, ...] | None = None) -> tuple[Phase, ...]:
        """Publish the object's unconfirmed phase events (as stored in `obj`) and remember
        what the broker confirmed; the marks ride along with the object's next write, or
        `record_published` writes them (the outbox timer)."""
        return await self._publish_status(ref, obj, Status.from_dict(obj.get("status")), only)

    async def _publish_status(self, ref: ObjectRef, obj: Manifest, status: Status,
                              only: tuple[Phase, ...] | None) -> tuple[Phase, ...]:
        async with self._publishing.hold(ref.uid):
            # What the broker already confirmed is not sent again.
            status = self._settle(ref.uid, status)
            if only is not None:  # the others count as sent for this call
                for entry in unpublished(status):
                    if entry.phase not in only:
                        status = mark_published(status, entry.phase)
            spec = obj.get("spec", {})
            phases = await publish_pending(status, ref_of(obj), self.publisher,
                                           spec_amount=spec.get("amount"),
                                           spec_currency=spec.get("currency"),
                                           include_url=self.include_url)
        if self.on_publish is not None and unpublished(status):
            self.on_publish("published" if len(phases) == len(unpublished(status))
                            else "deferred")
        self._confirmed.remember(ref.uid, phases)
        return phases

    async def record_published(self, ref: ObjectRef, base: Manifest | None = None,
                               only: tuple[Phase, ...] | None = None) -> Written:
        """Publish what is still unconfirmed (`only` these phases, if given) and write the
        marks now (the outbox timer, a deletion waiting for its events, the webhook): a
        write only when there is something to mark."""
        obj = base or await self.kube.get_session(ref.namespace, ref.name)
        if needs_relay(self.publisher):
            await self.publish(ref, obj, only)
        return await self.apply(ref, lambda _obj, current: current, base=obj)

    async def drain(self) -> None:
        """Wait for the after-write steps in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _with_published(status: Status, phases: tuple[Phase, ...], published: bool) -> Status:
    if not phases:
        return status
    return status.with_changes(history=tuple(
        dataclasses.replace(h, published=published) if h.phase in phases else h
        for h in status.history))


def _entry(status: Status, phase: Phase) -> HistoryEntry | None:
    return next((h for h in status.history if h.phase is phase), None)
