"""The writers' memory of broker confirmations and their per-object publish locks."""

from __future__ import annotations

import asyncio

from paykube.kube.confirmed import Confirmed, KeyedLocks


def test_confirmed_keeps_the_newest_within_its_bound() -> None:
    confirmed: Confirmed[str] = Confirmed(kept=3)
    confirmed.remember("a", ["Pending", "Open"])
    confirmed.remember("b", ["Pending", "Open"])
    assert ("a", "Pending") not in confirmed
    assert [(u, p) in confirmed for u, p in (("a", "Open"), ("b", "Pending"), ("b", "Open"))] \
        == [True, True, True]


async def test_one_holder_per_key_and_idle_keys_are_forgotten() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    peak = 0

    async def hold(key: str) -> None:
        nonlocal peak
        async with locks.hold(key):
            inside.append(key)
            peak = max(peak, inside.count("x"))
            await asyncio.sleep(0.01)
            inside.remove(key)

    await asyncio.gather(*(hold("x") for _ in range(5)), hold("y"))
    assert peak == 1
    assert len(locks) == 0
