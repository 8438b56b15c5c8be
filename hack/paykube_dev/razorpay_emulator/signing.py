"""Razorpay's webhook signature: `X-Razorpay-Signature` is the hex HMAC-SHA256 of the raw
body keyed with the webhook secret. There is no timestamp in it."""

from __future__ import annotations

import hashlib
import hmac


def sign_body(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
