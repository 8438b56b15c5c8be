"""The per-object chores that replaced kopf timers on PaymentSessions: run for exactly the
objects that need them, again every interval until an event says they no longer do, after
errors at the error's pace, never more at once than the bound, and never one object twice
at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter

from paykube.api.types import ObjectRef
from paykube.errors import ErrorCode, PaykubeError
from paykube.kube.client import NotFound
from paykube.operator.chores import PERMANENT_RETRY, Chore
from paykube.operator.reconciler import RetryLater


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ref(uid: str) -> ObjectRef:
    return ObjectRef("ns", uid, uid)


def nudge(chore: Chore) -> None:
    """An object noticed and forgotten at once: the loop looks at the (fake) clock again."""
    chore.want(ref("nudge"), True)
    chore.forget("nudge")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_runs_for_the_objects_that_need_it_until_an_event_says_otherwise() -> None:
    runs: Counter[str] = Counter()
    outcomes: list[tuple[str, str]] = []

    async def action(target: ObjectRef) -> None:
        runs[target.uid] += 1

    chore = Chore("confirm", action, interval=1.0, on_outcome=lambda c, o: outcomes.append(
        (c, o)))
    chore.want(ref("a"), True)
    chore.want(ref("b"), True)
    chore.want(ref("c"), False)  # never needed: never run
    chore.want(ref("a"), True)  # a repeated event does not schedule it twice
    task = asyncio.create_task(chore.run())
    try:
        await asyncio.sleep(0.05)
        assert runs == {"a": 1, "b": 1}
        chore.want(ref("b"), False)  # b's event: settled
        await asyncio.sleep(1.1)
        assert runs == {"a": 2, "b": 1}
        assert len(chore) == 1
    finally:
        task.cancel()
    assert set(outcomes) == {("confirm", "ok")}


async def test_initial_delay_and_errors_set_the_next_run() -> None:
    clock = FakeClock()
    runs: list[str] = []
    failures = {"retry": RetryLater("wait", delay=30.0),
                "permanent": PaykubeError("revoked", code=ErrorCode.PROVIDER_REJECTED),
                "bug": ValueError("a bug must not stop the loop")}

    async def action(target: ObjectRef) -> None:
        runs.append(target.uid)
        if target.uid == "gone":
            raise NotFound("deleted")
        if target.uid in failures:
            raise failures[target.uid]

    chore = Chore("outbox", action, interval=5.0, initial_delay=5.0, clock=clock)
    for uid in ("ok", "retry", "permanent", "bug", "gone"):
        chore.want(ref(uid), True)
    task = asyncio.create_task(chore.run())
    try:
        await settle()
        assert runs == []  # the initial delay has not passed
        clock.now += 5.0
        nudge(chore)
        await settle()
        assert sorted(runs) == ["bug", "gone", "ok", "permanent", "retry"]
        assert len(chore) == 4  # a deleted object is forgotten
        runs.clear()
        clock.now += 5.0
        nudge(chore)
        await settle()
        assert runs == ["ok"]  # the others wait for their error's delay
        runs.clear()
        clock.now += 25.0
        nudge(chore)
        await settle()
        assert sorted(runs) == ["ok", "retry"]
        runs.clear()
        clock.now += PERMANENT_RETRY
        nudge(chore)
        await settle()
        assert sorted(runs) == ["bug", "ok", "permanent", "retry"]
    finally:
        task.cancel()


async def test_bounded_and_never_the_same_object_twice_at_once() -> None:
    running: Counter[str] = Counter()
    most, twice = 0, False
    release = asyncio.Event()

    async def action(target: ObjectRef) -> None:
        nonlocal most, twice
        running[target.uid] += 1
        twice = twice or running[target.uid] > 1
        most = max(most, sum(running.values()))
        await release.wait()
        running[target.uid] -= 1

    chore = Chore("explain", action, interval=0.01, concurrency=2)
    for uid in "abcde":
        chore.want(ref(uid), True)
    task = asyncio.create_task(chore.run())
    try:
        await asyncio.sleep(0.1)  # many intervals pass while the first two are stuck
        assert most == 2
        chore.want(ref("a"), False)
        chore.want(ref("a"), True)  # an event for a running object: no second run
        await asyncio.sleep(0.05)
        assert not twice
        release.set()
        await asyncio.sleep(0.1)
        assert most == 2 and not twice
    finally:
        task.cancel()
        release.set()
        await chore.drain()
