"""Moves an object's outbox to the broker and records what the broker confirmed."""

from __future__ import annotations

from paykube.api.types import ObjectRef, Phase, Status
from paykube.events.outbox import publish_pending
from paykube.events.publisher import EventPublisher, NullPublisher
from paykube.kube.client import KubeClient, Manifest
from paykube.kube.status import ref_of, write_status
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


async def relay_outbox(kube: KubeClient, ref: ObjectRef, publisher: EventPublisher,
                       obj: Manifest | None = None, *,
                       include_url: bool = False) -> tuple[Phase, ...]:
    """Publish the object's unpublished phase events, then mark them published in status.

    `obj` is the object as just written, if the caller has it (saves a read). Never raises
    for a broker outage (the entries stay unpublished for the next run); API-server errors
    propagate so callers can decide.
    """
    if obj is None:
        obj = await kube.get_session(ref.namespace, ref.name)
    status = Status.from_dict(obj.get("status"))
    if not unpublished(status):
        return ()
    spec = obj.get("spec", {})
    phases = await publish_pending(status, ref_of(obj), publisher,
                                   spec_amount=spec.get("amount"),
                                   spec_currency=spec.get("currency"),
                                   include_url=include_url)
    if phases:
        def mark(_obj: Manifest, current: Status) -> Status:
            for phase in phases:
                current = mark_published(current, phase)
            return current

        await write_status(kube, ref, mark)
    return phases


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
