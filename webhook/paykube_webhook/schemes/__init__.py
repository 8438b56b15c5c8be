"""What every PSP's webhook scheme shares: the verified-event types the application
applies, the refusal of malformed content, and the checks of untrusted values against the
CRD's status schema.

A scheme (one per provider type: `stripe`, ...) verifies a request's signature with the
route's secrets and reads the event; the application (`paykube_webhook.app`) does the rest
the same way for every PSP, so it imports no PSP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paykube.api.refunds import RefundSnapshot
from paykube.api.types import ObjectRef, Phase
from paykube.lifecycle import SessionSnapshot
from paykube.settings import SecretStr


class MalformedEvent(ValueError):
    """A verified event whose content paykube cannot use; the message names the field."""


# Everything that reading untrusted JSON into our types can raise (RecursionError: deeply
# nested JSON; OverflowError/OSError: timestamps beyond what datetime can hold).
MALFORMED = (ValueError, TypeError, KeyError, RecursionError, OverflowError, OSError)
INT64 = 2**63
MAX_EXPIRES = 253402300799  # 9999-12-31T23:59:59Z, the last instant RFC 3339 can write
# Kubernetes: a namespace is a DNS-1123 label, a custom object's name a DNS-1123 subdomain.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class Ignored:
    """An event acknowledged without applying it, and why (`outcome`)."""

    event_id: str
    event_type: str
    outcome: str


@dataclass(frozen=True)
class Applicable:
    event_id: str
    event_type: str
    ref: ObjectRef
    phase: Phase
    session: SessionSnapshot
    livemode: bool | None = None
    account: str | None = None  # the Connect account the event is about


@dataclass(frozen=True)
class RefundReport:
    """A refund event about a paykube PaymentRefund (`ref`, from the refund's metadata)."""

    event_id: str
    event_type: str
    ref: ObjectRef
    refund: RefundSnapshot
    livemode: bool | None = None
    account: str | None = None


@dataclass(frozen=True)
class PaymentRefunded:
    """The PSP reports how much of a payment is refunded (Stripe's `charge.refunded`),
    about the PaymentSession `ref` (from the payment's metadata)."""

    event_id: str
    event_type: str
    ref: ObjectRef
    payment_id: str
    amount_refunded: int
    livemode: bool | None = None
    account: str | None = None


Parsed = Ignored | Applicable | RefundReport | PaymentRefunded


class WebhookScheme(Protocol):
    """One PSP's webhooks: its route family `/webhooks/<type>`, verifier and event mapping."""

    type: str

    def verify(self, payload: bytes, headers: Mapping[str, str],
               secrets: Sequence[SecretStr], *, now: float) -> None:
        """Raise `paykube_webhook.verify.SignatureError` unless one of `secrets` signed
        `payload` (the raw bytes, before any parsing)."""
        ...

    def parse(self, payload: bytes, headers: Mapping[str, str]) -> Parsed:
        """Read a verified event; raise one of `MALFORMED` when it cannot be used."""
        ...


def text(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise MalformedEvent(f"{field}: not a string of 1 to {max_length} characters")
    value.encode()  # a lone surrogate cannot be sent on: UnicodeEncodeError, a ValueError
    return value


def optional_text(value: Any, field: str, max_length: int) -> None:
    if value is not None and value != "":
        text(value, field, max_length)


def integer(value: Any, field: str, low: int, high: int) -> None:
    if value is not None and (type(value) is not int or not low <= value <= high):
        raise MalformedEvent(f"{field}: not an integer in [{low}, {high}]")


def object_of(session: dict[str, Any]) -> ObjectRef | None:
    """The object named by paykube's metadata keys, or None when they are absent or could
    not name a PaymentSession (so never a path built from arbitrary text)."""
    metadata = session.get("metadata")
    if not isinstance(metadata, dict):
        return None
    namespace = metadata.get("paykube_namespace")
    name = metadata.get("paykube_name")
    uid = metadata.get("paykube_uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        return None
    if (not DNS1123_LABEL.fullmatch(namespace) or len(name) > 253
            or not DNS1123_SUBDOMAIN.fullmatch(name) or not uid.strip()):
        return None
    return ObjectRef(namespace, name, uid)


