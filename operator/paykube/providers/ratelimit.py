"""One process-wide rate limiter for provider calls, with priorities (creates before polls)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from enum import IntEnum


class Priority(IntEnum):
    CREATE = 0
    CANCEL = 1
    POLL = 2


class RateLimiter:
    """A token bucket (`rate` per second, `burst` deep); waiters leave in priority order."""

    def __init__(self, rate: float, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._burst = float(max(1, burst))
        self._tokens = self._burst
        self._clock = clock
        self._updated = clock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, priority: Priority = Priority.POLL) -> float:
        """Wait for a slot; returns the seconds waited."""
        started = self._clock()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._seq), future))
        if self._timer is None:
            self._release()
        await future
        return self._clock() - started

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def _release(self) -> None:
        self._timer = None
        self._refill()
        while self._waiters and self._tokens >= 1:
            _, _, future = heapq.heappop(self._waiters)
            if future.done():  # cancelled while waiting
                continue
            self._tokens -= 1
            future.set_result(None)
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        if self._waiters and self._timer is None:
            delay = (1 - self._tokens) / self._rate
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)
