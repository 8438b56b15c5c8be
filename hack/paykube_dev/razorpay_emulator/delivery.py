"""Sends events to the registered webhooks, signed like Razorpay, and records every
attempt (posting, retries and records are the shared `psp_emulator.delivery`)."""

from __future__ import annotations

import asyncio
import json
import time

from paykube_dev.psp_emulator.delivery import Delivery, WebhookSender, next_attempt

from .model import Event, WebhookEndpoint
from .signing import sign_body
from .state import RazorpayState

USER_AGENT = "Razorpay-Webhook/v1"


def event_payload(event: Event) -> bytes:
    """The body Razorpay posts: the event JSON, compact."""
    return json.dumps(event.to_api(), separators=(",", ":")).encode("utf-8")


class Dispatcher:
    def __init__(self, state: RazorpayState) -> None:
        self.state = state
        self.sender = WebhookSender()

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    async def dispatch_now_or_later(self, event: Event, wait: bool) -> list[Delivery]:
        if wait:
            return await self.dispatch(event)
        self.dispatch_later(event)
        return []

    def dispatch_later(self, event: Event) -> None:
        self.sender.spawn(self.dispatch(event))

    async def dispatch(self, event: Event) -> list[Delivery]:
        """First attempt to every webhook that wants the event; retries in background."""
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
        self, event: Event, *, url: str | None = None, secret: str | None = None,
        endpoint_id: str | None = None,
    ) -> list[Delivery]:
        """The same event (same id, same body) again: to a URL, one webhook, or all."""
        if url is not None:
            if not secret:
                raise ValueError("a secret is needed to deliver to an explicit url")
            target = WebhookEndpoint(url=url, secret=secret, account_id=None, events=["*"])
            target.id = ""
            return [await self._attempt(event, target, 1, manual=True)]
        if endpoint_id is not None:
            endpoints = [self.state.endpoints[endpoint_id]]
        else:
            endpoints = [e for e in self.state.endpoints.values() if e.wants(event)]
        attempts = []
        for endpoint in endpoints:
            target = endpoint
            if secret:
                target = WebhookEndpoint(url=endpoint.url, secret=secret,
                                         account_id=endpoint.account_id, events=["*"],
                                         timeout=endpoint.timeout)
                target.id = endpoint.id
            number = next_attempt(self.state.deliveries, event.id, endpoint.id)
            attempts.append(self._attempt(event, target, number, manual=True))
        return list(await asyncio.gather(*attempts))

    async def _attempt(
        self, event: Event, endpoint: WebhookEndpoint, attempt: int, *, manual: bool = False,
    ) -> Delivery:
        payload = event_payload(event)
        signature = sign_body(payload, endpoint.secret)
        delivery = Delivery(
            event_id=event.id, endpoint_id=endpoint.id or None, url=endpoint.url,
            attempt=attempt, timestamp=None, signature=signature, automatic=not manual,
            at=time.time(), account_id=event.account_id,
        )
        self.state.deliveries.append(delivery)
        headers = {
            "Content-Type": "application/json", "X-Razorpay-Signature": signature,
            "X-Razorpay-Event-Id": event.id, "User-Agent": USER_AGENT,
        }
        await self.sender.post(delivery, payload, headers, endpoint.timeout)
        if delivery.ok and endpoint.id:
            event.pending.discard(endpoint.id)
        return delivery
