"""Stripe's webhooks: `Stripe-Signature` verification and the Checkout event mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from paykube.providers.base import ProviderPayloadInvalid
from paykube.providers.stripe import (
    ACCOUNT_ID,
    HANDLED_EVENTS,
    charge_refunded_facts,
    event_phase,
    refund_snapshot,
    snapshot,
)
from paykube.settings import SecretStr
from paykube_webhook.schemes import (
    INT64,
    MAX_EXPIRES,
    Applicable,
    Ignored,
    MalformedEvent,
    Parsed,
    PaymentRefunded,
    RefundReport,
    integer,
    object_of,
    optional_text,
    text,
)
from paykube_webhook.verify import verify


class StripeScheme:
    type = "stripe"

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance

    def verify(self, payload: bytes, headers: Mapping[str, str],
               secrets: Sequence[SecretStr], *, now: float) -> None:
        verify(payload, headers.get("Stripe-Signature"), secrets, tolerance=self.tolerance,
               now=now)

    def parse(self, payload: bytes, headers: Mapping[str, str]) -> Parsed:
        return parse_event(payload)


REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed"})
CHARGE_REFUNDED = "charge.refunded"


def parse_event(payload: bytes) -> Parsed:
    """Read a verified event into what the lifecycle needs; raises one of `MALFORMED`.

    Field types and lengths are checked against the CRD's status schema here, so that a
    strange but signed event is the sender's 400 and never an API-server 422 or our 500.
    """
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise MalformedEvent("event is not an object")
    event_id = text(event.get("id"), "id", 255)
    event_type = text(event.get("type"), "type", 255)
    data = event.get("data")
    session = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session, dict):
        raise MalformedEvent("data.object is not an object")
    if event_type in REFUND_EVENTS or event_type == CHARGE_REFUNDED:
        return _parse_refund_event(event, event_id, event_type, session)
    if event_type not in HANDLED_EVENTS:
        return Ignored(event_id, event_type, "ignored_type")
    ref = object_of(session)
    if ref is None or "id" not in session:
        return Ignored(event_id, event_type, "ignored_unmanaged")
    # Only now: another system's session is ignored, not judged by our mapping's checks.
    phase = event_phase(event_type, session)
    if phase is None:
        return Ignored(event_id, event_type, "ignored_unmanaged")
    _check_session(session)
    livemode, account = _origin(event)
    return Applicable(event_id, event_type, ref, phase, snapshot(session), livemode, account)


def _origin(event: dict[str, Any]) -> tuple[bool | None, str | None]:
    livemode = event.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise MalformedEvent("livemode: not a boolean")
    account = event.get("account")
    if account is not None and (not isinstance(account, str)
                                or not ACCOUNT_ID.fullmatch(account)):
        raise MalformedEvent("account: not an account id")
    return livemode, account


def _parse_refund_event(event: dict[str, Any], event_id: str, event_type: str,
                        obj: dict[str, Any]) -> Parsed:
    """`refund.*` binds to the PaymentRefund its metadata names; `charge.refunded` to the
    PaymentSession its charge's metadata (copied from the PaymentIntent) names. A refund
    made in the Dashboard has no paykube metadata: its refund events are ignored, its
    charge event reaches the session."""
    ref = object_of(obj)
    if ref is None:
        return Ignored(event_id, event_type, "ignored_unmanaged")
    livemode, account = _origin(event)
    try:
        if event_type == CHARGE_REFUNDED:
            facts = charge_refunded_facts(obj)
            if facts.payment_intent_id is None:
                return Ignored(event_id, event_type, "ignored_unmanaged")
            return PaymentRefunded(event_id, event_type, ref, facts.payment_intent_id,
                                   facts.amount_refunded, livemode, account)
        return RefundReport(event_id, event_type, ref, refund_snapshot(obj), livemode, account)
    except ProviderPayloadInvalid as exc:
        raise MalformedEvent(exc.message) from exc


def _check_session(session: dict[str, Any]) -> None:
    text(session.get("id"), "id", 255)
    optional_text(session.get("url"), "url", 8192)
    optional_text(session.get("payment_status"), "payment_status", 64)
    optional_text(session.get("currency"), "currency", 16)
    intent = session.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        optional_text(intent.get("id"), "payment_intent.id", 255)
        optional_text(intent.get("status"), "payment_intent.status", 64)
    else:
        optional_text(intent, "payment_intent", 255)
    integer(session.get("amount_total"), "amount_total", -INT64, INT64 - 1)
    integer(session.get("expires_at"), "expires_at", 0, MAX_EXPIRES)


