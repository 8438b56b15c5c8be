"""Sends events to webhook endpoints, signed like Stripe, and records every attempt."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from .model import Delivery, Event, WebhookEndpoint
from .signing import sign_payload_multi
from .state import EmulatorState

log = logging.getLogger(__name__)

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def event_payload(event: Event, api_version: str | None = None) -> bytes:
    """The body Stripe posts: the event JSON (at the endpoint's pinned API version),
    pretty-printed as Stripe does."""
    return json.dumps(event.to_api(api_version), indent=2).encode("utf-8")


class Dispatcher:
    """Delivers events: automatically after each transition, and again on request."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
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

    async def dispatch_now_or_later(self, event: Event, wait: bool) -> list[Delivery]:
        """The first attempts' results when `wait`, else nothing (delivered in background)."""
        if wait:
            return await self.dispatch(event)
        self.dispatch_later(event)
        return []

    def dispatch_later(self, event: Event) -> None:
        """Deliver in the background, the way Stripe does after an API call."""
        task = asyncio.get_running_loop().create_task(self.dispatch(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def dispatch(self, event: Event) -> list[Delivery]:
        """First attempt to every endpoint that wants the event; retries go on in background."""
        endpoints = [e for e in self.state.endpoints.values() if e.wants(event)]
        results = await asyncio.gather(*(self._attempt(event, e, 1) for e in endpoints))
        for endpoint, delivery in zip(endpoints, results, strict=True):
            if not delivery.ok and endpoint.retry_delays:
                task = asyncio.get_running_loop().create_task(self._retry(event, endpoint))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return list(results)

    async def redeliver(
        self, event: Event, *, url: str | None = None, secrets: Sequence[str] | None = None,
        timestamp: int | None = None, endpoint_id: str | None = None,
    ) -> list[Delivery]:
        """Send the event again: to one URL, one endpoint, or all that want it."""
        if url is not None:
            if not secrets:
                raise ValueError("a secret is needed to deliver to an explicit url")
            target = WebhookEndpoint(url=url, secrets=list(secrets))
            target.id = ""
            return [await self._attempt(event, target, 1, timestamp=timestamp, manual=True)]
        if endpoint_id is not None:
            endpoints = [self.state.endpoints[endpoint_id]]
        else:
            endpoints = [e for e in self.state.endpoints.values() if e.wants(event)]
        attempts = []
        for endpoint in endpoints:
            target = endpoint
            if secrets:
                target = WebhookEndpoint(
                    url=endpoint.url, secrets=list(secrets), timeout=endpoint.timeout,
                    api_version=endpoint.api_version, account_id=endpoint.account_id,
                )
                target.id = endpoint.id
            attempts.append(
                self._attempt(event, target, self._next_attempt(event, endpoint.id),
                              timestamp=timestamp, manual=True)
            )
        return list(await asyncio.gather(*attempts))

    def _next_attempt(self, event: Event, endpoint_id: str) -> int:
        return 1 + sum(
            1 for d in self.state.deliveries
            if d.event_id == event.id and d.endpoint_id == endpoint_id
        )

    async def _retry(self, event: Event, endpoint: WebhookEndpoint) -> None:
        for number, delay in enumerate(endpoint.retry_delays, start=2):
            await asyncio.sleep(delay)
            if endpoint.id not in event.pending or endpoint.id not in self.state.endpoints:
                return
            delivery = await self._attempt(event, endpoint, number)
            if delivery.ok:
                return

    async def _attempt(
        self, event: Event, endpoint: WebhookEndpoint, attempt: int, *,
        timestamp: int | None = None, manual: bool = False,
    ) -> Delivery:
        assert self._http is not None, "dispatcher not started"
        api_version = endpoint.api_version or event.api_version
        payload = event_payload(event, api_version)
        ts = self.state.clock.now_int() if timestamp is None else timestamp
        signature = sign_payload_multi(payload, endpoint.secrets, ts)
        delivery = Delivery(
            event_id=event.id, endpoint_id=endpoint.id or None, url=endpoint.url,
            attempt=attempt, timestamp=ts, signature=signature, automatic=not manual,
            at=time.time(), api_version=api_version, account_id=endpoint.account_id,
        )
        self.state.deliveries.append(delivery)
        headers = {
            "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
            "User-Agent": USER_AGENT, "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
        }
        started = time.monotonic()
        try:
            async with self._http.post(
                endpoint.url, data=payload, headers=headers,
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
            ) as response:
                delivery.status = response.status
                delivery.response_body = (await response.text(errors="replace"))[:2000]
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        delivery.duration_ms = round((time.monotonic() - started) * 1000, 1)
        if delivery.ok and endpoint.id:
            event.pending.discard(endpoint.id)
        log.info(
            "delivered %s %s to %s: %s", event.id, event.type, endpoint.url,
            delivery.status if delivery.status is not None else delivery.error,
        )
        return delivery
