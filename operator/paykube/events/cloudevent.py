"""Payment events as CloudEvents 1.0 (structured JSON): pure, no I/O.

One event per phase a `PaymentSession` reached (one `status.history` entry):

- `id` `<uid>/<phase>` (phase lower-cased): deterministic, so a re-published event (the
  outbox delivers at least once) carries the same id and consumers can drop duplicates;
- `type` `dev.paykube.paymentsession.<phase>`; `source` the object's API path;
  `subject` `<namespace>/<name>`; `time` when the phase was reached (`history[].at`).

What `data` carries, and what it never carries:

- the session's public fields, as they are in `status` when the event is built: the ids
  (object uid, Stripe session and payment intent), payment status, amounts, currency,
  expiry, the phase of this event and the session's current phase (an event re-published
  after a broker outage is built from a newer status), where the transition came from
  (`operator` | `webhook` | `poll`) and the provider event id behind it;
- the checkout URL (`status.url`) only when configured (`PAYKUBE_EVENTS_INCLUDE_URL`): it is
  what a notification service needs to send the customer the link, but whoever holds it can
  pay (or see the page), and the bus may be shared by many tenants;
- the provider (`stripe`) the payment lives at;
- on `Failed`, the error's catalog code, the provider's code and its doc URL, but not the
  error message: provider messages may quote request values (an e-mail address);
- never `spec.metadata` (free-form, may hold personal data), nor the customer e-mail, the
  description or the line items.

A `PaymentRefund` has events of its own, `dev.paykube.paymentrefund.<phase>`, built by
`build_refund_event` under the same rules (docs/refunds.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from paykube.api.refunds import RefundHistoryEntry, RefundStatus, refund_api_path
from paykube.api.types import ErrorInfo, HistoryEntry, ObjectRef, Phase, RefundPhase, Status

SPECVERSION = "1.0"
TYPE_PREFIX = "dev.paykube.paymentsession."
REFUND_TYPE_PREFIX = "dev.paykube.paymentrefund."
CONTENT_TYPE_JSON = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
"""The media type of a CloudEvent in structured mode (event and data in one JSON body)."""


def event_id(uid: str, phase: Phase) -> str:
    """The deterministic id of the event for `phase` of the object `uid`."""
    return f"{uid}/{phase.value.lower()}"


def event_type(phase: Phase) -> str:
    return f"{TYPE_PREFIX}{phase.value.lower()}"


@dataclass(frozen=True)
class CloudEvent:
    """A CloudEvents 1.0 event with JSON data; `to_json()` renders the structured form."""

    id: str
    type: str
    source: str
    subject: str
    time: str | None
    data: dict[str, Any] = field(hash=False)
    specversion: str = SPECVERSION
    datacontenttype: str = CONTENT_TYPE_JSON

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "datacontenttype": self.datacontenttype,
            "data": self.data,
        }
        if self.time:
            out["time"] = self.time
        return out

    def to_json(self) -> bytes:
        """Structured-mode JSON, UTF-8; the same event always renders to the same bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


def build_event(
    ref: ObjectRef, status: Status, entry: HistoryEntry, *,
    spec_amount: int | None = None, spec_currency: str | None = None,
    include_url: bool = False,
) -> CloudEvent:
    """The event for one history entry of the object `ref` whose status is `status`.

    `spec_amount` / `spec_currency` (optional, from the spec) fill `data.amount` (the
    requested amount) and `data.currency` before the provider has reported the session;
    `data.amountTotal` is only ever the provider's figure.
    """
    phase = entry.phase
    data: dict[str, Any] = {
        "namespace": ref.namespace,
        "name": ref.name,
        "uid": ref.uid,
        "phase": phase.value,
        "currentPhase": status.phase.value,
        "source": entry.source.value,
        "eventId": entry.event_id,
        "provider": status.provider or "stripe",
        "sessionId": status.session_id,
        "paymentIntentId": status.payment_intent_id,
        "paymentStatus": status.payment_status,
        "amount": spec_amount,
        "amountTotal": status.amount_total,
        "currency": status.currency or spec_currency,
        "expiresAt": status.expires_at,
    }
    if include_url:
        data["url"] = status.url
    if phase is Phase.FAILED and status.error is not None:
        data["error"] = _public_error(status.error)
    return CloudEvent(
        id=event_id(ref.uid, phase),
        type=event_type(phase),
        source=ref.api_path,
        subject=f"{ref.namespace}/{ref.name}",
        time=entry.at or None,
        data=data,
    )


def _public_error(error: ErrorInfo) -> dict[str, Any]:
    """The error's codes and doc URL; never its message (it may quote request values)."""
    out: dict[str, Any] = {"code": error.code}
    if error.provider_code is not None:
        out["providerCode"] = error.provider_code
    if error.doc_url is not None:
        out["docUrl"] = error.doc_url
    return out


def refund_event_id(uid: str, phase: RefundPhase) -> str:
    """The deterministic id of the event for `phase` of the PaymentRefund `uid`."""
    return f"{uid}/{phase.value.lower()}"


def refund_event_type(phase: RefundPhase) -> str:
    return f"{REFUND_TYPE_PREFIX}{phase.value.lower()}"


def build_refund_event(ref: ObjectRef, status: RefundStatus, entry: RefundHistoryEntry,
                       session_name: str) -> CloudEvent:
    """The event for one history entry of the PaymentRefund `ref` (docs/refunds.md).

    The same rules as a session's event: deterministic id `<refund uid>/<phase>`, `data`
    built from the status as it is now (`currentPhase` may be later than `phase`), the
    error's codes on Failed but not its message, and never `spec.metadata` (free-form,
    may hold a support ticket's personal data). `data.uid` is the refund's uid, so the
    STOMP publisher groups a refund's events on one consumer, in order.
    """
    phase = entry.phase
    data: dict[str, Any] = {
        "namespace": ref.namespace,
        "name": ref.name,
        "uid": ref.uid,
        "sessionName": session_name,
        "sessionUid": status.session_uid,
        "phase": phase.value,
        "currentPhase": status.phase.value,
        "source": entry.source.value,
        "eventId": entry.event_id,
        "provider": status.provider or "stripe",
        "refundId": status.refund_id,
        "paymentId": status.payment_id,
        "amount": status.amount,
        "currency": status.currency,
    }
    if phase is RefundPhase.FAILED:
        # Stripe's failure_reason is an enum word (e.g. expired_or_canceled_card).
        data["failureReason"] = status.failure_reason
        if status.error is not None:
            data["error"] = _public_error(status.error)
    return CloudEvent(
        id=refund_event_id(ref.uid, phase),
        type=refund_event_type(phase),
        source=refund_api_path(ref.namespace, ref.name),
        subject=f"{ref.namespace}/{ref.name}",
        time=entry.at or None,
        data=data,
    )
