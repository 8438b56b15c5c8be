"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`.

The signed message is `f"{t}.{payload}"` over the raw body bytes, HMAC-SHA256 keyed with the
endpoint secret (`whsec_...`). During a secret roll Stripe sends one `v1` per live secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex `v1` signature of `payload` at `timestamp` under `secret`."""
    message = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value for one secret."""
    return sign_payload_multi(payload, [secret], timestamp)


def sign_payload_multi(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The `Stripe-Signature` header value with one `v1` per secret (secret rotation)."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    parts = [f"t={timestamp}"]
    parts.extend(f"v1={compute_signature(payload, s, timestamp)}" for s in secrets)
    return ",".join(parts)
