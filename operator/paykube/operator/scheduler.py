"""One poll scheduler for every open session, instead of a task per object.

The backstop poll of a non-terminal session is an entry in a heap ordered by when it is
due: a few dozen bytes per object rather than a daemon task and its state, so 10,000 open
sessions cost little memory; and a bounded number of polls run at once, so a burst of due
polls cannot crowd out creates (the Stripe limiter also serves creates first).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from paykube.api.types import ObjectRef, Phase, Status
from paykube.errors import PaykubeError
from paykube.kube.client import NotFound
from paykube.operator.polling import poll_delay_for
from paykube.operator.reconciler import RetryLater

log = logging.getLogger(__name__)

Poll = Callable[[ObjectRef], Awaitable[Status]]


@dataclass(slots=True)
class _Entry:
    """What scheduling needs of a session, not its status (about 2 KiB as a `Status`,
    10,000 times): the phase and expiry for the interval, a fingerprint to tell a poll
    that changed nothing (the interval grows) from one that did."""

    ref: ObjectRef
    created: dt.datetime
    phase: Phase
    expires_at: str | None
    fingerprint: int
    unchanged: int = 0
    due: float = 0.0
    running: bool = False

    def holds(self, status: Status) -> None:
        self.phase, self.expires_at = status.phase, status.expires_at
        self.fingerprint = hash(status)


class PollScheduler:
    def __init__(self, poll: Poll, *, min_interval: float, max_interval: float,
                 concurrency: int = 8, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._poll = poll
        self._min, self._max = min_interval, max_interval
        self._clock, self._wall = clock, wall
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def track(self, ref: ObjectRef, created: dt.datetime, status: Status) -> None:
        """The object as a watch event shows it: polled while it has not ended."""
        entry = self._entries.get(ref.uid)
        if status.phase.terminal:
            self.forget(ref.uid)
            return
        if entry is None:
            entry = self._entries[ref.uid] = _Entry(ref, created, status.phase,
                                                    status.expires_at, hash(status))
            self._schedule(entry)
        elif not entry.running and hash(status) != entry.fingerprint:
            entry.holds(status)
            entry.unchanged = 0

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)  # its heap item is skipped when it comes up

    def _schedule(self, entry: _Entry) -> None:
        delay = poll_delay_for(entry.phase, entry.expires_at, entry.created, self._wall(),
                               entry.unchanged, min_interval=self._min,
                               max_interval=self._max)
        entry.due = self._clock() + delay
        heapq.heappush(self._heap, (entry.due, entry.ref.uid))
        self._wake.set()

    async def run(self) -> None:
        """Poll what is due, forever (cancel to stop)."""
        while True:
            self._wake.clear()
            while self._heap and (self._heap[0][1] not in self._entries
                                  or self._entries[self._heap[0][1]].due != self._heap[0][0]):
                heapq.heappop(self._heap)  # forgotten, or rescheduled since
            if not self._heap:
                await self._wake.wait()
                continue
            wait = self._heap[0][0] - self._clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            _, uid = heapq.heappop(self._heap)
            entry = self._entries[uid]
            entry.running = True
            await self._slots.acquire()
            task = asyncio.create_task(self._run_one(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_one(self, entry: _Entry) -> None:
        try:
            polled = await self._poll(entry.ref)
        except NotFound:
            self.forget(entry.ref.uid)
            return
        except (PaykubeError, RetryLater) as exc:
            log.info("poll deferred: %s", exc,
                     extra={"object": f"{entry.ref.namespace}/{entry.ref.name}"})
            polled = None
        except Exception:  # a poll must never stop the scheduler
            log.exception("poll failed", extra={"object": f"{entry.ref.namespace}/"
                                                          f"{entry.ref.name}"})
            polled = None
        finally:
            self._slots.release()
            entry.running = False
        if entry.ref.uid not in self._entries:
            return
        if polled is None:  # deferred: as unchanged
            entry.unchanged += 1
        elif polled.phase.terminal:
            self.forget(entry.ref.uid)
            return
        elif hash(polled) == entry.fingerprint:
            entry.unchanged += 1
        else:
            entry.holds(polled)
            entry.unchanged = 0
        self._schedule(entry)
