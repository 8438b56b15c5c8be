"""The outbox: `status.history[].published` says which phase events the broker confirmed.

`publish_pending` sends the unconfirmed ones; the caller records what it returns with
`paykube.lifecycle.mark_published` in a status write. Delivery is at least once: an event
confirmed by the broker but not yet recorded (crash, conflict) is sent again under the same
id, and consumers drop the duplicate.
"""

from __future__ import annotations

import logging

from paykube.api.types import ObjectRef, Phase, Status
from paykube.events.cloudevent import build_event
from paykube.events.publisher import BrokerUnavailableError, EventPublisher
from paykube.lifecycle import unpublished

log = logging.getLogger(__name__)


async def publish_pending(
    status: Status, ref: ObjectRef, publisher: EventPublisher, *,
    spec_amount: int | None = None, spec_currency: str | None = None,
    include_url: bool = False,
) -> tuple[Phase, ...]:
    """Publish one event per unpublished history entry, in history order.

    Returns the phases the broker confirmed. Stops at the first `BrokerUnavailableError`
    (logged, not raised) so that a consumer never sees a later phase before an earlier one
    from the same outbox run; a shorter result than `unpublished(status)` means "retry later".
    """
    done: list[Phase] = []
    for entry in unpublished(status):
        event = build_event(ref, status, entry, spec_amount=spec_amount,
                            spec_currency=spec_currency, include_url=include_url)
        try:
            await publisher.publish(event)
        except BrokerUnavailableError as exc:
            log.warning("payment event not published, will retry",
                        extra={"event_id": event.id, "object": f"{ref.namespace}/{ref.name}",
                               "error_code": exc.code.value, "error": exc.message})
            break
        done.append(entry.phase)
    return tuple(done)
