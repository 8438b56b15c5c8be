"""The one place where a PaymentRefund's status changes (the operator and the webhook).

The same contract as the session's `StatusWriter`: `decide(object, current) -> next` on the
object at hand, written with its resourceVersion as precondition and decided again on a
409; phase events are published only after the status holding them is stored, and their
`history[].published` marks are written after the broker confirmed them (the outbox timer
catches what a crash left). Refunds are few next to sessions, so marks are written at once
rather than folded into a later write. What the broker confirmed is remembered per uid, so a
body read before the mark was written (the outbox timer's, a queued after-write step's) does
not send the same event again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paykube.api.refunds import RefundStatus, refund_api_path, refund_ref
from paykube.api.types import ObjectRef, RefundPhase
from paykube.errors import ConflictError, PaykubeError
from paykube.events.publisher import EventPublisher
from paykube.events.refund_outbox import (
    mark_refund_published,
    publish_pending_refund,
    unpublished_refund,
)
from paykube.events.relay import needs_relay
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.confirmed import Confirmed, KeyedLocks

log = logging.getLogger(__name__)

_CONFIRMED_KEPT = 16384

RefundDecide = Callable[[Manifest, RefundStatus], RefundStatus]
OnRefundTransition = Callable[[ObjectRef, RefundStatus, RefundStatus, Manifest],
                              Awaitable[None]]


@dataclass(frozen=True)
class RefundWritten:
    obj: Manifest
    before: RefundStatus
    after: RefundStatus

    @property
    def moved(self) -> bool:
        return self.after.phase is not self.before.phase


@dataclass
class RefundWriter:
    kube: KubeClient
    publisher: EventPublisher
    on_transition: OnRefundTransition | None = None
    attempts: int = 10
    _locks: KeyedLocks = field(default_factory=KeyedLocks)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _confirmed: Confirmed[RefundPhase] = field(
        default_factory=lambda: Confirmed(_CONFIRMED_KEPT))

    async def get(self, namespace: str, name: str) -> Manifest:
        return await self.kube.get_object(refund_api_path(namespace, name))

    async def apply(self, ref: ObjectRef, decide: RefundDecide, *,
                    base: Manifest | None = None) -> RefundWritten:
        """Write `decide(object, current)`; NotFound when the object is gone or replaced."""
        obj = base
        for _ in range(self.attempts):
            if obj is None:
                obj = await self.get(ref.namespace, ref.name)
            if ref.uid and obj["metadata"]["uid"] != ref.uid:
                raise NotFound(f"{ref.namespace}/{ref.name} now has a different uid")
            current = RefundStatus.from_dict(obj.get("status"))
            proposed = decide(obj, current)
            if not needs_relay(self.publisher):
                for entry in unpublished_refund(proposed):
                    proposed = mark_refund_published(proposed, entry.phase)
            if proposed == current:
                return RefundWritten(obj, current, current)
            try:
                written = await self.kube.replace_object_status(
                    refund_api_path(ref.namespace, ref.name), obj["metadata"]["uid"],
                    obj["metadata"]["resourceVersion"], proposed.to_dict())
            except ConflictError:
                obj = None
                continue
            result = RefundWritten(written, current, proposed)
            self._after(ref, result)
            return result
        raise ConflictError(f"{ref.namespace}/{ref.name}: gave up after "
                            f"{self.attempts} conflicts")

    def _after(self, ref: ObjectRef, result: RefundWritten) -> None:
        work: list[Awaitable[None]] = []
        if result.moved and self.on_transition is not None:
            work.append(self.on_transition(ref, result.before, result.after, result.obj))
        if needs_relay(self.publisher) and unpublished_refund(result.after):
            work.append(self._record_quietly(ref, result.obj))
        if work:
            task = asyncio.create_task(self._run(work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(work: list[Awaitable[None]]) -> None:
        for item in work:
            try:
                await item
            except PaykubeError as exc:  # the status is the record; the outbox retries
                log.warning("after-write step failed: %s", exc.message)

    async def _record_quietly(self, ref: ObjectRef, obj: Manifest) -> None:
        with contextlib.suppress(NotFound):
            await self.record_published(ref, obj)

    async def record_published(self, ref: ObjectRef,
                               base: Manifest | None = None) -> RefundWritten:
        """Publish the unconfirmed phase events (in history order) and write the marks."""
        async with self._locks.hold(ref.uid):
            obj = base or await self.get(ref.namespace, ref.name)
            status = self._settle(ref.uid, RefundStatus.from_dict(obj.get("status")))
            session = str(obj.get("spec", {}).get("sessionRef", {}).get("name", ""))
            if unpublished_refund(status):
                self._confirmed.remember(ref.uid, await publish_pending_refund(
                    status, refund_ref(obj), self.publisher, session))

            def decide(_obj: Manifest, current: RefundStatus) -> RefundStatus:
                return self._settle(ref.uid, current)

            return await self.apply(ref, decide, base=obj)

    def _settle(self, uid: str, status: RefundStatus) -> RefundStatus:
        for entry in unpublished_refund(status):
            if (uid, entry.phase) in self._confirmed:
                status = mark_refund_published(status, entry.phase)
        return status

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
