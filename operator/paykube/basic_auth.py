"""HTTP Basic credentials checked in constant time: the webhook's `/metrics` and the
dashboard's pages use the same check."""

from __future__ import annotations

import base64
import hmac

from paykube.settings import SecretStr


def credentials_match(header: str | None, username: str, password: SecretStr) -> bool:
    """Whether a Basic Authorization header carries exactly these credentials; with none
    configured (an empty username or password) nothing passes."""
    if not username or not password or not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True)
    except ValueError:
        return False
    expected = f"{username}:{password.get()}".encode()
    return hmac.compare_digest(given, expected)
