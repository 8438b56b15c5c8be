"""Webhook delivery shared by the emulators: one record per attempt, HTTP posting with a
deadline, background retries. What is posted (body, signature headers) is the PSP's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .clock import JsonObject, new_id

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One attempt to deliver one event to one endpoint."""

    event_id: str
    endpoint_id: str | None
    url: str
    attempt: int
    timestamp: int | None
    signature: str
    automatic: bool
    at: float
    status: int | None = None
    error: str | None = None
    duration_ms: float = 0.0
    response_body: str = ""
    api_version: str | None = None
    account_id: str | None = None
    id: str = field(default_factory=lambda: new_id("dl_"))

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "event": self.event_id, "endpoint": self.endpoint_id,
            "url": self.url, "attempt": self.attempt, "timestamp": self.timestamp,
            "signature": self.signature, "automatic": self.automatic, "at": self.at,
            "status": self.status, "ok": self.ok, "error": self.error,
            "duration_ms": self.duration_ms, "response_body": self.response_body,
            "api_version": self.api_version, "account_id": self.account_id,
        }


class WebhookSender:
    """Posts signed bodies and runs background work (deliveries, retries) it can cancel."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(auto_decompress=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background until done or until the sender closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(
        self, delivery: Delivery, payload: bytes, headers: dict[str, str], deadline: float,
    ) -> Delivery:
        """Send one attempt and note its answer (or why there was none) in `delivery`."""
        assert self._http is not None, "webhook sender not started"
        started = time.monotonic()
        try:
            async with self._http.post(
                delivery.url, data=payload, headers=headers,
                timeout=aiohttp.ClientTimeout(total=deadline),
            ) as response:
                delivery.status = response.status
                delivery.response_body = (await response.text(errors="replace"))[:2000]
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        delivery.duration_ms = round((time.monotonic() - started) * 1000, 1)
        log.info("delivered %s to %s: %s", delivery.event_id, delivery.url,
                 delivery.status if delivery.status is not None else delivery.error)
        return delivery

    def retry_later(
        self, delays: Sequence[float], attempt: Callable[[int], Awaitable[Delivery]],
        wanted: Callable[[], bool],
    ) -> None:
        """Attempts 2, 3, ... after `delays` while `wanted()`, until one succeeds."""

        async def run() -> None:
            for number, delay in enumerate(delays, start=2):
                await asyncio.sleep(delay)
                if not wanted():
                    return
                if (await attempt(number)).ok:
                    return

        if delays:
            self.spawn(run())


def next_attempt(deliveries: Sequence[Delivery], event_id: str, endpoint_id: str) -> int:
    return 1 + sum(
        1 for d in deliveries if d.event_id == event_id and d.endpoint_id == endpoint_id
    )
