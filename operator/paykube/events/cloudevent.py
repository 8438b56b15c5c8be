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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from paykube.api.types import HistoryEntry, ObjectRef, Phase, Status

SPECVERSION = "1.0"
TYPE_PREFIX = "dev.paykube.paymentsession."
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
        error: dict[str, Any] = {"code": status.error.code}
        if status.error.provider_code is not None:
            error["providerCode"] = status.error.provider_code
        if status.error.doc_url is not None:
            error["docUrl"] = status.error.doc_url
        data["error"] = error
    return CloudEvent(
        id=event_id(ref.uid, phase),
        type=event_type(phase),
        source=ref.api_path,
        subject=f"{ref.namespace}/{ref.name}",
        time=entry.at or None,
        data=data,
    )
