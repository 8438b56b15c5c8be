"""Sends events to webhook endpoints, signed like Stripe, and records every attempt
(dispatching, posting, retries and records are the shared `psp_emulator.delivery`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from paykube_dev.psp_emulator.delivery import BaseDispatcher

from .model import Delivery, Event, WebhookEndpoint
from .signing import sign_payload_multi
from .state import EmulatorState

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def event_payload(event: Event, api_version: str | None = None) -> bytes:
    """The body Stripe posts: the event JSON (at the endpoint's pinned API version),
    pretty-printed as Stripe does."""
    return json.dumps(event.to_api(api_version), indent=2).encode("utf-8")


class Dispatcher(BaseDispatcher[Event, WebhookEndpoint]):
    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        self.state = state

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
            return [await self.attempt(event, target, 1, manual=True, timestamp=timestamp)]
        endpoints = ([self.state.endpoints[endpoint_id]] if endpoint_id is not None
                     else self.targets(event))
        targets = []
        for endpoint in endpoints:
            target = endpoint
            if secrets:
                target = WebhookEndpoint(
                    url=endpoint.url, secrets=list(secrets), timeout=endpoint.timeout,
                    api_version=endpoint.api_version, account_id=endpoint.account_id,
                )
                target.id = endpoint.id
            targets.append((target, endpoint.id))
        return await self.redeliver_to(event, targets, timestamp=timestamp)

    async def attempt(
        self, event: Event, endpoint: WebhookEndpoint, number: int, *, manual: bool = False,
        **options: Any,
    ) -> Delivery:
        timestamp: int | None = options.get("timestamp")
        api_version = endpoint.api_version or event.api_version
        payload = event_payload(event, api_version)
        ts = self.state.clock.now_int() if timestamp is None else timestamp
        signature = sign_payload_multi(payload, endpoint.secrets, ts)
        delivery = Delivery(
            event_id=event.id, endpoint_id=endpoint.id or None, url=endpoint.url,
            attempt=number, timestamp=ts, signature=signature, automatic=not manual,
            at=time.time(), api_version=api_version, account_id=endpoint.account_id,
        )
        self.state.deliveries.append(delivery)
        headers = {
            "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
            "User-Agent": USER_AGENT, "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
        }
        await self.sender.post(delivery, payload, headers, endpoint.timeout)
        self.sent(event, endpoint, delivery)
        return delivery
