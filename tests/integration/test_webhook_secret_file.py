"""Webhook signing secrets from a mounted Secret's file: a rotation is picked up without a
restart, and a missing file makes the webhook not ready (5xx, so Stripe retries)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from paykube_dev.kube import ControlPlane
from paykube_dev.programs import start_webhook
from paykube_dev.stripe_emulator import sign_payload

OLD, NEW = "whsec_file_old_0123456789", "whsec_file_new_9876543210"


def deliver(url: str, secret: str) -> int:
    # A verified event of a type paykube does not handle is answered 2xx and ignored.
    body = json.dumps({"id": "evt_file", "type": "customer.created", "object": "event",
                       "data": {"object": {}}}).encode()
    t = int(time.time())
    headers = {"Stripe-Signature": sign_payload(body, secret, t),
               "Content-Type": "application/json"}
    return httpx.post(f"{url}/webhooks/stripe", content=body, headers=headers,
                      timeout=10).status_code


def wait_status(url: str, secret: str, want: int, timeout: float = 15.0) -> int:
    deadline, got = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        got = deliver(url, secret)
        if got == want:
            break
        time.sleep(0.2)
    return got


def test_rotated_secret_file_is_picked_up_without_restart(kube: ControlPlane,
                                                          tmp_path: Path) -> None:
    secret_file = tmp_path / "webhookSecrets"
    secret_file.write_text(OLD)
    webhook = start_webhook(kube.kubeconfig, tmp_path / "webhook.log", {
        "PAYKUBE_WEBHOOK_SECRETS_FILE": str(secret_file), "PAYKUBE_SECRETS_TTL": "1"})
    try:
        assert deliver(webhook.url, OLD) == 200
        assert deliver(webhook.url, NEW) == 400

        # Stripe's roll: both valid for a while (newline-separated, as in a Secret's file).
        secret_file.write_text(f"{OLD}\n{NEW}\n")
        assert wait_status(webhook.url, NEW, 200) == 200
        assert deliver(webhook.url, OLD) == 200

        secret_file.write_text(NEW)
        assert wait_status(webhook.url, OLD, 400) == 400
        assert deliver(webhook.url, NEW) == 200

        secret_file.unlink()
        assert wait_status(webhook.url, NEW, 503) == 503
        ready = httpx.get(f"{webhook.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert webhook.proc.poll() is None, "a missing secret must not stop the process"
    finally:
        webhook.stop()
    log = (tmp_path / "webhook.log").read_text()
    assert OLD not in log and NEW not in log
    assert str(secret_file) in log, "the log names the file that could not be read"


def metrics_status(url: str, auth: tuple[str, str]) -> int:
    return httpx.get(f"{url}/metrics", auth=auth, timeout=10).status_code


def test_metrics_credentials_from_files_rotate_without_restart(kube: ControlPlane,
                                                               tmp_path: Path) -> None:
    user_file, password_file = tmp_path / "metricsUsername", tmp_path / "metricsPassword"
    user_file.write_text("prometheus")
    password_file.write_text("metrics-pw-one-7d1e")
    webhook = start_webhook(kube.kubeconfig, tmp_path / "webhook.log", {
        "PAYKUBE_WEBHOOK_SECRETS": OLD, "PAYKUBE_SECRETS_TTL": "1",
        "PAYKUBE_METRICS_USERNAME_FILE": str(user_file),
        "PAYKUBE_METRICS_PASSWORD_FILE": str(password_file)})
    old, new = ("prometheus", "metrics-pw-one-7d1e"), ("prometheus", "metrics-pw-two-9c2f")
    try:
        assert metrics_status(webhook.url, old) == 200
        assert metrics_status(webhook.url, new) == 401
        password_file.write_text(new[1])
        deadline = time.monotonic() + 15
        while metrics_status(webhook.url, new) != 200:
            assert time.monotonic() < deadline, "the rotated password was not picked up"
            time.sleep(0.2)
        assert metrics_status(webhook.url, old) == 401
        password_file.unlink()
        deadline = time.monotonic() + 15
        while metrics_status(webhook.url, new) != 401:
            assert time.monotonic() < deadline, "a missing password file still let us in"
            time.sleep(0.2)
    finally:
        webhook.stop()
    log = (tmp_path / "webhook.log").read_text()
    assert "metrics-pw-" not in log
    assert "metrics credentials unavailable" in log and str(password_file) in log
