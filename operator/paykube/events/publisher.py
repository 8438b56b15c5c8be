"""Where payment events go: the `EventPublisher` protocol and its no-broker stand-in."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from paykube.errors import ErrorCode, PaykubeError
from paykube.events.cloudevent import CloudEvent


class BrokerUnavailableError(PaykubeError):
    """The broker did not confirm the event (down, unreachable, refused, or no receipt).

    Retryable: the history entry stays unpublished and the outbox sends it again later.
    `retry_after` is how long the publisher will refuse without trying (its backoff window),
    when it knows.
    """

    code = ErrorCode.BROKER_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class EventPublisher(Protocol):
    async def publish(self, event: CloudEvent) -> None:
        """Return once the broker has stored the event; raise `BrokerUnavailableError`."""
        ...

    async def aclose(self) -> None:
        """Release the connection; publishing afterwards raises `BrokerUnavailableError`."""
        ...


class NullPublisher:
    """The publisher when no broker is configured: every publish succeeds and does nothing.

    So the outbox marks each entry published and does not keep retrying against a broker
    that does not exist. The consequence, on purpose: events of transitions made while no
    broker was configured are never sent, even if a broker is configured later.
    """

    async def publish(self, event: CloudEvent) -> None:
        return None

    async def aclose(self) -> None:
        return None
