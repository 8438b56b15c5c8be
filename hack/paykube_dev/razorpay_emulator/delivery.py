"""Sends events to the registered webhooks, signed like Razorpay, and records every
attempt (dispatching, posting, retries and records are the shared `psp_emulator.delivery`)."""

from __future__ import annotations

import json
import time
from typing import Any

from paykube_dev.psp_emulator.delivery import BaseDispatcher, Delivery

from .model import Event, WebhookEndpoint
from .signing import sign_body
from .state import RazorpayState

USER_AGENT = "Razorpay-Webhook/v1"


def event_payload(event: Event) -> bytes:
    """The body Razorpay posts: the event JSON, compact."""
    return json.dumps(event.to_api(), separators=(",", ":")).encode("utf-8")


class Dispatcher(BaseDispatcher[Event, WebhookEndpoint]):
    def __init__(self, state: RazorpayState) -> None:
        super().__init__(state)
        self.state = state

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
            return [await self.attempt(event, target, 1, manual=True)]
        endpoints = ([self.state.endpoints[endpoint_id]] if endpoint_id is not None
                     else self.targets(event))
        targets = []
        for endpoint in endpoints:
            target = endpoint
            if secret:
                target = WebhookEndpoint(url=endpoint.url, secret=secret,
                                         account_id=endpoint.account_id, events=["*"],
                                         timeout=endpoint.timeout)
                target.id = endpoint.id
            targets.append((target, endpoint.id))
        return await self.redeliver_to(event, targets)

    async def attempt(
        self, event: Event, endpoint: WebhookEndpoint, number: int, *, manual: bool = False,
        **options: Any,
    ) -> Delivery:
        payload = event_payload(event)
        signature = sign_body(payload, endpoint.secret)
        delivery = Delivery(
            event_id=event.id, endpoint_id=endpoint.id or None, url=endpoint.url,
            attempt=number, timestamp=None, signature=signature, automatic=not manual,
            at=time.time(), account_id=event.account_id,
        )
        self.state.deliveries.append(delivery)
        headers = {
            "Content-Type": "application/json", "X-Razorpay-Signature": signature,
            "X-Razorpay-Event-Id": event.id, "User-Agent": USER_AGENT,
        }
        await self.sender.post(delivery, payload, headers, endpoint.timeout)
        self.sent(event, endpoint, delivery)
        return delivery
