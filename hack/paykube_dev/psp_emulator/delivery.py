"""Webhook delivery shared by the emulators: one record per attempt, HTTP posting with a
deadline, background retries. What is posted (body, signature headers) is the PSP's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

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


class DeliverableEvent(Protocol):
    id: str
    pending: set[str]


class Endpoint(Protocol):
    id: str
    retry_delays: list[float]

    def wants(self, event: Any) -> bool: ...


E = TypeVar("E", bound=DeliverableEvent)
W = TypeVar("W", bound=Endpoint)


class Store(Protocol[W]):
    """Where a dispatcher finds endpoints and notes attempts (an emulator's state, whose
    collections are replaced on reset, so they are read through it every time)."""

    endpoints: dict[str, W]
    deliveries: list[Delivery]


class BaseDispatcher(Generic[E, W]):
    """Delivers events: automatically after each change, and again on request. A PSP's
    dispatcher says how one attempt is signed and sent (`attempt`)."""

    def __init__(self, store: Store[W]) -> None:
        self.store = store
        self.sender = WebhookSender()

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    async def attempt(self, event: E, endpoint: W, number: int, *, manual: bool = False,
                      **options: Any) -> Delivery:
        raise NotImplementedError

    def targets(self, event: E) -> list[W]:
        return [e for e in self.store.endpoints.values() if e.wants(event)]

    async def dispatch_now_or_later(self, event: E, wait: bool) -> list[Delivery]:
        """The first attempts' results when `wait`, else nothing (delivered in background)."""
        if wait:
            return await self.dispatch(event)
        self.dispatch_later(event)
        return []

    def dispatch_later(self, event: E) -> None:
        """Deliver in the background, the way a PSP does after an API call."""
        self.sender.spawn(self.dispatch(event))

    async def dispatch(self, event: E) -> list[Delivery]:
        """First attempt to every endpoint that wants the event; retries go on in background."""
        endpoints = self.targets(event)
        results = await asyncio.gather(*(self.attempt(event, e, 1) for e in endpoints))
        for endpoint, delivery in zip(endpoints, results, strict=True):
            if not delivery.ok:
                self._retry(event, endpoint)
        return list(results)

    def _retry(self, event: E, endpoint: W) -> None:
        async def attempt(number: int) -> Delivery:
            return await self.attempt(event, endpoint, number)

        def wanted() -> bool:
            return endpoint.id in event.pending and endpoint.id in self.store.endpoints

        self.sender.retry_later(endpoint.retry_delays, attempt, wanted)

    async def redeliver_to(self, event: E, targets: Sequence[tuple[W, str]],
                           **options: Any) -> list[Delivery]:
        """Manual attempts, numbered after the earlier ones to the endpoint id given with
        each target (a target may be a copy with another secret or URL)."""
        return list(await asyncio.gather(*(
            self.attempt(event, target,
                         next_attempt(self.store.deliveries, event.id, endpoint_id),
                         manual=True, **options)
            for target, endpoint_id in targets
        )))

    def sent(self, event: E, endpoint: W, delivery: Delivery) -> None:
        """Note a successful attempt: the event is no longer pending for that endpoint."""
        if delivery.ok and endpoint.id:
            event.pending.discard(endpoint.id)
