"""What both status writers keep in memory about their publishing.

`Confirmed`: which (uid, phase) events the broker confirmed to this process, so that a body
read before its mark was written (a queued after-write step's, the outbox timer's) never
sends a confirmed event again. Bounded: the oldest are forgotten, which costs at most a
duplicate (consumers drop it by its id).

`KeyedLocks`: one publisher at a time per object, so that two writes in a row (Pending,
then Open) do not both send the first one's event.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

P = TypeVar("P")


class Confirmed(Generic[P]):
    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._seen: OrderedDict[tuple[str, P], None] = OrderedDict()

    def remember(self, uid: str, phases: Iterable[P]) -> None:
        for phase in phases:
            self._seen[(uid, phase)] = None
        while len(self._seen) > self.kept:
            self._seen.popitem(last=False)

    def __contains__(self, key: tuple[str, P]) -> bool:
        return key in self._seen


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            # Dropped by the last user only: a waiter keeps the same lock, and a newcomer
            # must find it, or two publishers would run for one object.
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
