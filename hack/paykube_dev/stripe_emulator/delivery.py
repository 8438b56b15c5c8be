"""Sends events to webhook endpoints, signed like Stripe, and records every attempt
(posting, retries and records are the shared `paykube_dev.psp_emulator.delivery`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from paykube_dev.psp_emulator.delivery import WebhookSender, next_attempt

from .model import Delivery, Event, WebhookEndpoint
from .signing import sign_payload_multi
from .state import EmulatorState

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def event_payload(event: Event, api_version: str | None = None) -> bytes:
    """The body Stripe posts: the event JSON (at the endpoint's pinned API version),
    pretty-printed as Stripe does."""
    return json.dumps(event.to_api(api_version), indent=2).encode("utf-8")


class Dispatcher:
    """Delivers events: automatically after each transition, and again on request."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.sender = WebhookSender()

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    async def dispatch_now_or_later(self, event: Event, wait: bool) -> list[Delivery]:
        """The first attempts' results when `wait`, else nothing (delivered in background)."""
        if wait:
            return await self.dispatch(event)
        self.dispatch_later(event)
        return []

    def dispatch_later(self, event: Event) -> None:
        """Deliver in the background, the way Stripe does after an API call."""
        self.sender.spawn(self.dispatch(event))

    async def dispatch(self, event: Event) -> list[Delivery]:
        """First attempt to every endpoint that wants the event; retries go on in background."""
        endpoints = [e for e in self.state.endpoints.values() if e.wants(event)]
        results = await asyncio.gather(*(self._attempt(event, e, 1) for e in endpoints))
        for endpoint, delivery in zip(endpoints, results, strict=True):
            if not delivery.ok:
                self._retry(event, endpoint)
        return list(results)

    def _retry(self, event: Event, endpoint: WebhookEndpoint) -> None:
        async def attempt(number: int) -> Delivery:
            return await self._attempt(event, endpoint, number)

        def wanted() -> bool:
            return endpoint.id in event.pending and endpoint.id in self.state.endpoints

        self.sender.retry_later(endpoint.retry_delays, attempt, wanted)

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
            number = next_attempt(self.state.deliveries, event.id, endpoint.id)
            attempts.append(
                self._attempt(event, target, number, timestamp=timestamp, manual=True)
            )
        return list(await asyncio.gather(*attempts))

    async def _attempt(
        self, event: Event, endpoint: WebhookEndpoint, attempt: int, *,
        timestamp: int | None = None, manual: bool = False,
    ) -> Delivery:
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
        await self.sender.post(delivery, payload, headers, endpoint.timeout)
        if delivery.ok and endpoint.id:
            event.pending.discard(endpoint.id)
        return delivery
