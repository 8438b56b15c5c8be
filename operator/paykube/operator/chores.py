"""Per-object chores of PaymentSessions (confirm an ending a webhook reported, relay the
outbox, fill in an explanation), each run by one loop for all objects instead of a kopf
timer per object.

A kopf timer on a resource makes kopf keep every object's whole body in memory for as long
as the object exists (the `live_fresh_body` its daemons read), whether or not the timer's
filter ever matches; with 10,000 open sessions that was most of the operator's memory. The
watch events already pass through one handler (`poll-schedule`), which tells each chore
which objects need it now; a chore keeps only the references of those few objects, in a
heap ordered by when each is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paykube.api.types import ObjectRef
from paykube.errors import PaykubeError
from paykube.kube.client import NotFound
from paykube.operator.reconciler import RetryLater

log = logging.getLogger(__name__)

Action = Callable[[ObjectRef], Awaitable[object]]
# After a permanent error: try again now and then (the cause, a revoked key or a deleted
# Secret, may be fixed), never in a tight loop.
PERMANENT_RETRY = 60.0
RETRYABLE_RETRY = 10.0


@dataclass
class Chore:
    """`action(ref)` every `interval` seconds for each object that needs it, the first time
    `initial_delay` after it is noticed; at most `concurrency` at once."""

    name: str
    action: Action
    interval: float
    initial_delay: float = 0.0
    concurrency: int = 4
    on_outcome: Callable[[str, str], None] | None = None  # (chore, outcome): a metric
    clock: Callable[[], float] = time.monotonic
    _due: dict[str, tuple[ObjectRef, float]] = field(default_factory=dict)
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _running: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def want(self, ref: ObjectRef, needed: bool) -> None:
        """What a watch event says: the object needs this chore now, or no longer."""
        if not needed:
            self.forget(ref.uid)
        elif ref.uid not in self._due:
            self._schedule(ref, self.clock() + self.initial_delay)

    def forget(self, uid: str) -> None:
        if self._due.pop(uid, None) is not None:  # its heap item is skipped when it comes up
            self._wake.set()

    def __len__(self) -> int:
        return len(self._due)

    def _schedule(self, ref: ObjectRef, at: float) -> None:
        self._due[ref.uid] = (ref, at)
        heapq.heappush(self._heap, (at, next(self._order), ref.uid))
        self._wake.set()

    async def run(self) -> None:
        """Run what is due, forever (cancel to stop)."""
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            self._wake.clear()
            while self._heap and self._stale(self._heap[0]):
                heapq.heappop(self._heap)
            if not self._heap:
                await self._wake.wait()
                continue
            wait = self._heap[0][0] - self.clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            _, _, uid = heapq.heappop(self._heap)
            ref, _ = self._due[uid]
            self._running.add(uid)
            await slots.acquire()
            task = asyncio.create_task(self._run_one(ref, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _stale(self, item: tuple[float, int, str]) -> bool:
        """Forgotten, rescheduled since, or running (it is scheduled again when done)."""
        at, _, uid = item
        held = self._due.get(uid)
        return held is None or held[1] != at or uid in self._running

    async def _run_one(self, ref: ObjectRef, slots: asyncio.Semaphore) -> None:
        delay, outcome = self.interval, "ok"
        try:
            await self.action(ref)
        except NotFound:
            outcome = "gone"
            self.forget(ref.uid)
        except RetryLater as exc:
            outcome, delay = "retry", max(exc.delay, self.interval)
        except PaykubeError as exc:
            outcome = exc.code.value
            delay = max(RETRYABLE_RETRY if exc.retryable else PERMANENT_RETRY, self.interval)
            log.warning("%s failed: %s", self.name, exc.message,
                        extra={"object": f"{ref.namespace}/{ref.name}"})
        except Exception:  # a chore must never stop its loop
            outcome, delay = "error", max(PERMANENT_RETRY, self.interval)
            log.exception("%s failed", self.name,
                          extra={"object": f"{ref.namespace}/{ref.name}"})
        finally:
            slots.release()
            self._running.discard(ref.uid)
        if self.on_outcome is not None:
            self.on_outcome(self.name, outcome)
        if ref.uid in self._due:  # still needed as far as the last event said
            self._schedule(ref, self.clock() + delay)

    async def drain(self) -> None:
        """Wait for the chores in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
