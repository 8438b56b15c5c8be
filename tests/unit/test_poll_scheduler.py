"""The one poll scheduler: polls each open session when due, stops at its end, forgets a
deleted one, and never runs more polls at once than its bound."""

from __future__ import annotations

import asyncio
import datetime as dt

from paykube.api.types import ObjectRef, Phase, Status
from paykube.kube.client import NotFound
from paykube.operator.scheduler import PollScheduler

CREATED = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
OPEN = Status(phase=Phase.OPEN, session_id="cs_test_1")


async def test_polls_until_the_session_ends_and_bounds_concurrency() -> None:
    polled: list[str] = []
    running, most = 0, 0

    async def poll(ref: ObjectRef) -> Status:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        polled.append(ref.uid)
        if ref.uid == "gone":
            raise NotFound("deleted")
        return Status(phase=Phase.PAID) if polled.count(ref.uid) >= 2 else OPEN

    scheduler = PollScheduler(poll, min_interval=1.0, max_interval=1.0, concurrency=2)
    for uid in ("a", "b", "c", "gone"):
        scheduler.track(ObjectRef("ns", uid, uid), CREATED, OPEN)
    scheduler.track(ObjectRef("ns", "done", "done"), CREATED, Status(phase=Phase.PAID))
    assert len(scheduler) == 4  # an ended session is never scheduled
    task = asyncio.create_task(scheduler.run())
    try:
        for _ in range(100):
            if len(scheduler) == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert len(scheduler) == 0
    assert sorted(polled) == ["a", "a", "b", "b", "c", "c", "gone"]
    assert most <= 2


async def test_a_forgotten_session_is_not_polled() -> None:
    polled: list[str] = []

    async def poll(ref: ObjectRef) -> Status:
        polled.append(ref.uid)
        return OPEN

    scheduler = PollScheduler(poll, min_interval=1.0, max_interval=1.0)
    scheduler.track(ObjectRef("ns", "x", "x"), CREATED, OPEN)
    scheduler.forget("x")
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(1.5)
    task.cancel()
    assert polled == []
