"""Stripe webhook signature verification, on the raw bytes, before any parsing.

Same scheme as stripe-python's `WebhookSignature.verify_header`: the header is
`t=<unix>,v1=<hex>[,v1=<hex>...]`, each v1 is HMAC-SHA256(secret, f"{t}.{body}"); any v1
under any configured secret (rotation) may match; the timestamp must be within
`tolerance` seconds of now; digests are compared in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence
from enum import StrEnum

from paykube.settings import SecretStr


class Failure(StrEnum):
    """Why a signature was refused: a log field and metric label, never told to the caller."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    NO_V1 = "no_v1_signature"
    STALE = "timestamp_outside_tolerance"
    MISMATCH = "no_matching_signature"
    NO_SECRETS = "no_secrets_configured"


class SignatureError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.value)
        self.failure = failure


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    mac = _keyed(secret).copy()
    mac.update(str(timestamp).encode())
    mac.update(b".")
    mac.update(payload)
    return mac.hexdigest()


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC already keyed with `secret`, to copy: keying costs as much as hashing a
    small event, and every request to a route uses the same few secrets."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def verify(
    payload: bytes, header: str | None, secrets: Sequence[SecretStr], *, tolerance: int,
    now: float,
) -> int:
    """Return the verified timestamp or raise SignatureError."""
    if not secrets:
        raise SignatureError(Failure.NO_SECRETS)
    if not header:
        raise SignatureError(Failure.MISSING_HEADER)
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(Failure.MALFORMED_HEADER)
        if key == "t":
            # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
            if (timestamp is not None or not value.isascii() or not value.isdigit()
                    or len(value) > 12):
                raise SignatureError(Failure.MALFORMED_HEADER)
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        raise SignatureError(Failure.MALFORMED_HEADER)
    if not candidates:
        raise SignatureError(Failure.NO_V1)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(Failure.STALE)
    for secret in secrets:
        expected = compute_signature(payload, secret.get(), timestamp).encode()
        # Check every candidate so timing does not reveal which one matched.
        matches = [hmac.compare_digest(expected, c.encode("utf-8", "replace"))
                   for c in candidates]
        if any(matches):
            return timestamp
    raise SignatureError(Failure.MISMATCH)
