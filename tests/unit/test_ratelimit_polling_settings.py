"""Rate limiter ordering, poll scheduling and settings masking."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from paykube.api.types import Phase
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube.operator.polling import next_poll_delay, poll_delay_for
from paykube.operator.runtime import Runtime
from paykube.providers.ratelimit import Priority, RateLimiter
from paykube.settings import SecretStr, Settings


async def test_limiter_serves_creates_before_polls() -> None:
    limiter = RateLimiter(rate=50.0)
    await limiter.acquire()  # drain the single token so the rest must queue
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        order.append(name)

    tasks = [asyncio.create_task(take(f"poll{i}", Priority.POLL)) for i in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("create", Priority.CREATE)))
    await asyncio.gather(*tasks)
    assert order[0] == "create"
    assert sorted(order[1:]) == ["poll0", "poll1", "poll2"]


async def test_limiter_survives_cancelled_waiters() -> None:
    limiter = RateLimiter(rate=100.0)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    assert await asyncio.wait_for(limiter.acquire(), timeout=2) >= 0


def test_poll_delay_backs_off_and_returns_near_expiry() -> None:
    rng = random.Random(7)

    def delay(age: float, unchanged: int, until_expiry: float | None) -> float:
        return next_poll_delay(age=age, unchanged_polls=unchanged, until_expiry=until_expiry,
                               min_interval=10.0, max_interval=300.0, rng=rng)

    young = delay(5, 5, None)
    assert 8 <= young <= 12
    settled = delay(3600, 10, None)
    assert 240 <= settled <= 300
    near_expiry = delay(3600, 10, 20)
    assert 24 <= near_expiry <= 36


def test_past_expiry_backs_off_instead_of_polling_at_the_minimum() -> None:
    rng = random.Random(7)
    for until_expiry in (-1.0, -60.0, -86400.0):
        delay = next_poll_delay(age=7200, unchanged_polls=10, until_expiry=until_expiry,
                                min_interval=10.0, max_interval=300.0, rng=rng)
        assert delay >= 240, until_expiry
    fresh = next_poll_delay(age=7200, unchanged_polls=0, until_expiry=-60.0,
                            min_interval=10.0, max_interval=300.0, rng=rng)
    assert 8 <= fresh <= 12, "the normal backoff starts from the minimum"


NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("phase", "expires_in", "low", "high"), [
    (Phase.OPEN, 20, 24, 36),            # open, near expiry: poll just after it
    (Phase.OPEN, -600, 240, 360),        # open, long past expiry: normal backoff (+20% jitter)
    (Phase.PROCESSING, 20, 240, 360),    # Processing cannot expire: normal backoff
    (Phase.PROCESSING, -600, 240, 360),
])
def test_poll_delay_uses_the_expiry_rule_only_while_open(
        phase: Phase, expires_in: int, low: float, high: float) -> None:
    expires = (NOW + dt.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = NOW - dt.timedelta(hours=2)
    # What the poll scheduler calls, with the settings' defaults.
    delays = [poll_delay_for(phase, expires, created, NOW, 10, min_interval=10.0,
                             max_interval=300.0) for _ in range(20)]
    assert all(low <= d <= high for d in delays), delays


async def test_the_secrets_ttl_setting_reaches_the_credential_resolver() -> None:
    settings = Settings.from_env({"PAYKUBE_SECRETS_TTL": "7"})
    # Nothing listens there: building the runtime must not need the API server.
    runtime = Runtime.build(settings, KubeClient(KubeConfig(server="https://127.0.0.1:9")))
    try:
        assert runtime.credentials.ttl == 7.0
        assert runtime.reconciler.accounts.ttl == 7.0
    finally:
        await runtime.aclose()


def test_settings_read_env_and_mask_secrets() -> None:
    settings = Settings.from_env({"PAYKUBE_STRIPE_API_KEY": "sk_test_abc",
                                  "PAYKUBE_WEBHOOK_SECRETS": "whsec_a, whsec_b",
                                  "PAYKUBE_NAMESPACES": "a,b"})
    assert settings.stripe_api_key.get() == "sk_test_abc"
    assert [s.get() for s in settings.webhook_secrets] == ["whsec_a", "whsec_b"]
    assert settings.namespaces == ("a", "b")
    text = repr(settings)
    assert "sk_test_abc" not in text and "whsec_a" not in text
    assert str(SecretStr("x")) == "SecretStr('**********')"
