"""The operator's /readyz: not ready (503, one log line with the reason) while its
operator-wide Stripe key cannot be read; ready once it can, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.plugins.paykube_fixtures import Stack, solo_operator

KEY = "sk_test_readiness_5e1f9a"


def readyz(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)


def test_readiness_follows_the_default_key_file(stack: Stack, tmp_path: Path) -> None:
    key_file = tmp_path / "stripeApiKey"  # not there yet: the Secret is not mounted
    with solo_operator(stack, tmp_path, PAYKUBE_STRIPE_API_KEY="",
                       PAYKUBE_STRIPE_API_KEY_FILE=str(key_file),
                       PAYKUBE_SECRETS_TTL="1") as solo:
        port = solo.operator.metrics_port
        assert port is not None
        answer = readyz(port)
        assert answer.status_code == 503
        body = answer.json()
        assert body["ready"] is False and body["apiServer"]["ok"] is True
        assert body["stripeCredentials"]["reason"] == "SecretsUnavailable"
        assert str(key_file) in body["stripeCredentials"]["message"]
        assert body["broker"] in ("connected", "disconnected", "not_configured")
        readyz(port)  # a second probe: still one log line for the flip

        key_file.write_text(KEY)
        deadline = time.monotonic() + 15
        while readyz(port).status_code != 200:
            assert time.monotonic() < deadline, readyz(port).json()
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
        log = solo.operator.log.read_text()
    flips = [line for line in log.splitlines() if "operator not ready" in line]
    assert len(flips) == 1 and "stripeCredentials" in flips[0]
    assert "operator ready" in log
    assert KEY not in log
