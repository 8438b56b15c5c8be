"""Payment events: CloudEvents 1.0 JSON to ActiveMQ over STOMP, with an outbox in status.

`cloudevent` is pure; `publisher` holds the protocol; `stomp` the broker adapter;
`outbox` publishes what `status.history` has not yet had confirmed.
"""

from paykube.events.cloudevent import CloudEvent, build_event, event_id, event_type
from paykube.events.outbox import publish_pending
from paykube.events.publisher import BrokerUnavailableError, EventPublisher, NullPublisher

__all__ = [
    "BrokerUnavailableError",
    "CloudEvent",
    "EventPublisher",
    "NullPublisher",
    "build_event",
    "event_id",
    "event_type",
    "publish_pending",
]
