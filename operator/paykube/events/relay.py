"""The broker as the status writer sees it: whether one is configured, its state, and
outbox settling when there is none (publishing itself: `paykube.kube.writer`)."""

from __future__ import annotations

from paykube.api.types import Status
from paykube.events.publisher import EventPublisher, NullPublisher
from paykube.lifecycle import mark_published, unpublished
from paykube.settings import Settings


def needs_relay(publisher: EventPublisher) -> bool:
    """False when no broker is configured: there is nothing to publish to."""
    return not isinstance(publisher, NullPublisher)


def broker_state(publisher: EventPublisher) -> str:
    """connected, disconnected or not_configured; no I/O (a probe must answer fast)."""
    if not needs_relay(publisher):
        return "not_configured"
    return "connected" if getattr(publisher, "connected", False) is True else "disconnected"


def settle_outbox(status: Status, publisher: EventPublisher) -> Status:
    """With no broker, mark new history entries published in the same status write, so
    that no second write (and no outbox timer) is spent on them."""
    if needs_relay(publisher):
        return status
    for entry in unpublished(status):
        status = mark_published(status, entry.phase)
    return status


def build_publisher(settings: Settings) -> EventPublisher:
    """The STOMP publisher when a broker is configured, else a no-op publisher."""
    if not settings.broker_urls:
        return NullPublisher()
    from paykube.events.stomp import StompPublisher  # stomp.py loads only when needed

    hosts = []
    for item in settings.broker_urls:
        host, _, port = item.removeprefix("stomp+ssl://").removeprefix("stomp://").rpartition(":")
        hosts.append((host, int(port)))
    # A stomp+ssl:// URL (as the Amazon MQ console shows it) means TLS like the setting does.
    tls = settings.broker_tls or any(u.startswith("stomp+ssl://") for u in settings.broker_urls)
    return StompPublisher(
        hosts, settings.broker_destination, login=settings.broker_username or None,
        passcode=settings.broker_password or None, use_ssl=tls,
    )
