"""Razorpay's webhooks: `X-Razorpay-Signature` verification and the Payment Link events.

The signature is the hex HMAC-SHA256 of the raw body with the webhook secret, and holds no
timestamp: a replayed event is harmless because the lifecycle only moves forward, and a
redelivery is recognised by its `X-Razorpay-Event-Id` (the history's eventId).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from paykube.providers.base import ProviderPayloadInvalid
from paykube.providers.razorpay import (
    ACCOUNT_ID,
    HANDLED_EVENTS,
    REFUND_EVENTS,
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
    RefundReport,
    integer,
    object_of,
    optional_text,
    text,
)
from paykube_webhook.verify import Failure, SignatureError

SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "X-Razorpay-Event-Id"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
EVENT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


def compute_signature(payload: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify(payload: bytes, header: str | None, secrets: Sequence[SecretStr]) -> None:
    """Raise SignatureError unless one of `secrets` signed `payload`; every secret is tried
    (rotation), each compare in constant time."""
    if not secrets:
        raise SignatureError(Failure.NO_SECRETS)
    if not header:
        raise SignatureError(Failure.MISSING_HEADER)
    given = header.strip().lower()
    if not _HEX_SHA256.fullmatch(given):
        raise SignatureError(Failure.MALFORMED_HEADER)
    matched = False
    for secret in secrets:
        expected = compute_signature(payload, secret.get())
        matched |= hmac.compare_digest(expected.encode(), given.encode())
    if not matched:
        raise SignatureError(Failure.MISMATCH)


class RazorpayScheme:
    type = "razorpay"

    def verify(self, payload: bytes, headers: Mapping[str, str],
               secrets: Sequence[SecretStr], *, now: float) -> None:
        verify(payload, headers.get(SIGNATURE_HEADER), secrets)

    def parse(self, payload: bytes, headers: Mapping[str, str]) -> Parsed:
        return parse_event(payload, headers.get(EVENT_ID_HEADER))


def parse_event(payload: bytes, event_id: str | None) -> Parsed:
    """Read a verified event into what the lifecycle needs; raises one of `MALFORMED`.

    The event id is the `X-Razorpay-Event-Id` header (the body has none); it is what
    recognises a redelivery, so an event without one is refused.
    """
    if event_id is None or not EVENT_ID.fullmatch(event_id):
        raise MalformedEvent(f"{EVENT_ID_HEADER}: missing or not an event id")
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise MalformedEvent("event is not an object")
    event_type = text(event.get("event"), "event", 255)
    if event_type in REFUND_EVENTS:
        return _parse_refund_event(event, event_id, event_type)
    if event_type not in HANDLED_EVENTS:
        return Ignored(event_id, event_type, "ignored_type")
    link = _entity(event, "payment_link")
    if link is None:
        raise MalformedEvent("payload.payment_link.entity is not an object")
    ref = object_of({"metadata": link.get("notes")})
    if ref is None or "id" not in link:
        return Ignored(event_id, event_type, "ignored_unmanaged")
    _check_link(link)
    phase = event_phase(event_type, link)
    if phase is None:
        return Ignored(event_id, event_type, "ignored_type")
    account = event.get("account_id")
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise MalformedEvent("account_id: not an account id")
    payment = _entity(event, "payment")
    payment_id = None
    if payment is not None:
        payment_id = text(payment.get("id"), "payload.payment.entity.id", 255)
    return Applicable(event_id, event_type, ref, phase,
                      snapshot(link, payment_id=payment_id, account=account),
                      livemode=None, account=account)


def _parse_refund_event(event: dict[str, Any], event_id: str, event_type: str) -> Parsed:
    """`refund.*` binds to the PaymentRefund its notes name (a refund made in the
    Dashboard has none: acknowledged and ignored)."""
    refund = _entity(event, "refund")
    if refund is None:
        raise MalformedEvent("payload.refund.entity is not an object")
    notes = refund.get("notes")
    ref = object_of({"metadata": notes if isinstance(notes, dict) else None})
    if ref is None:
        return Ignored(event_id, event_type, "ignored_unmanaged")
    account = event.get("account_id")
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise MalformedEvent("account_id: not an account id")
    try:
        snap = refund_snapshot(refund)
    except ProviderPayloadInvalid as exc:
        raise MalformedEvent(exc.message) from exc
    # The session records the Razorpay account it was paid in; the refund's must match.
    return RefundReport(event_id, event_type, ref, snap, livemode=None, account=account)


def _entity(event: dict[str, Any], name: str) -> dict[str, Any] | None:
    payload = event.get("payload")
    wrapper = payload.get(name) if isinstance(payload, dict) else None
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else None


def _check_link(link: dict[str, Any]) -> None:
    text(link.get("id"), "payload.payment_link.entity.id", 255)
    optional_text(link.get("short_url"), "short_url", 8192)
    optional_text(link.get("status"), "status", 64)
    optional_text(link.get("currency"), "currency", 16)
    integer(link.get("amount"), "amount", -INT64, INT64 - 1)
    integer(link.get("amount_paid"), "amount_paid", -INT64, INT64 - 1)
    integer(link.get("expire_by"), "expire_by", 0, MAX_EXPIRES)
