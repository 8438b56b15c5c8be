"""The outbox of a PaymentRefund: `status.history[].published` says which of its phase
events the broker confirmed, as for sessions (`paykube.events.outbox`).

`publish_pending_refund` sends the unconfirmed ones; the caller records what it returns with
`mark_refund_published` in a status write. At least once: an event confirmed but not yet
recorded is sent again under the same id, and consumers drop the duplicate.
"""

from __future__ import annotations

import logging

from paykube.api.refunds import RefundHistoryEntry, RefundStatus
from paykube.api.types import ObjectRef, RefundPhase
from paykube.events.cloudevent import build_refund_event
from paykube.events.publisher import BrokerUnavailableError, EventPublisher

log = logging.getLogger(__name__)


def unpublished_refund(status: RefundStatus) -> tuple[RefundHistoryEntry, ...]:
    """The history entries whose event the broker has not confirmed, in history order."""
    return tuple(h for h in status.history if not h.published)


def mark_refund_published(status: RefundStatus, phase: RefundPhase) -> RefundStatus:
    """Record that `phase`'s event reached the broker (pure; other entries unchanged)."""
    history = tuple(
        RefundHistoryEntry(h.phase, h.at, h.source, h.event_id, True) if h.phase is phase
        else h
        for h in status.history
    )
    return status.with_changes(history=history)


async def publish_pending_refund(status: RefundStatus, ref: ObjectRef,
                                 publisher: EventPublisher, session_name: str,
                                 ) -> tuple[RefundPhase, ...]:
    """Publish one event per unpublished history entry, in history order.

    Returns the phases the broker confirmed. Stops at the first `BrokerUnavailableError`
    (logged, not raised), so that a consumer never sees Failed (a bank's return) before
    the Succeeded it reverses from the same outbox run; a result shorter than
    `unpublished_refund(status)` means "retry later".
    """
    done: list[RefundPhase] = []
    for entry in unpublished_refund(status):
        event = build_refund_event(ref, status, entry, session_name)
        try:
            await publisher.publish(event)
        except BrokerUnavailableError as exc:
            log.warning("refund event not published, will retry",
                        extra={"event_id": event.id, "object": f"{ref.namespace}/{ref.name}",
                               "error_code": exc.code.value, "error": exc.message})
            break
        done.append(entry.phase)
    return tuple(done)
