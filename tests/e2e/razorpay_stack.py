"""A Razorpay tenant on the real platform: the Razorpay emulator as its own process, an
operator of its own (so tests may kill it) that knows the emulator's address, and a
PaymentProvider of type razorpay whose webhook the emulator delivers to the shared
webhook process on the provider's own route (status.webhookPath), signed with its secret."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from paykube_dev.razorpay_emulator import RazorpayControl, RazorpayEmulatorProcess, sign_body
from tests.plugins.paykube_fixtures import (
    Manifest,
    Solo,
    Stack,
    create_provider,
    provider_ref,
    solo_operator,
)

PROVIDER = "razorpay-account"


@dataclass
class RazorpayTenant:
    stack: Stack
    solo: Solo
    control: RazorpayControl
    base_url: str
    key_id: str
    key_secret: str
    signing: str
    account_id: str
    route: str

    @property
    def namespace(self) -> str:
        return self.solo.namespace

    def apply(self, name: str, **spec: Any) -> Manifest:
        spec.setdefault("currency", "inr")
        spec.setdefault("amount", 50000)
        return self.stack.apply(self.namespace, name, providerRef=provider_ref(PROVIDER), **spec)

    def open(self, name: str, **spec: Any) -> Manifest:
        self.apply(name, **spec)
        return self.stack.wait_phase(self.namespace, name, "Open")

    def wait_phase(self, name: str, phase: str, timeout: float = 60.0) -> Manifest:
        return self.stack.wait_phase(self.namespace, name, phase, timeout=timeout)

    def get(self, name: str) -> Manifest:
        return self.stack.get(self.namespace, name)

    def post(self, body: bytes, *, secret: str | None = None, event_id: str | None = None,
             signature: str | None = None, route: str | None = None) -> httpx.Response:
        """A webhook delivery to the real webhook process, signed like Razorpay (an empty
        `signature`: no signature header at all)."""
        if signature is None:
            signature = sign_body(body, secret or self.signing)
        headers = {"Content-Type": "application/json", "X-Razorpay-Signature": signature,
                   "X-Razorpay-Event-Id": ("evt_" + secrets.token_hex(7) if event_id is None
                                           else event_id)}
        if not signature:
            del headers["X-Razorpay-Signature"]
        return httpx.post(f"{self.stack.webhook.url}{route or self.route}", content=body,
                          headers=headers, timeout=30)


def history(obj: Manifest) -> list[tuple[str, str]]:
    return [(h["phase"], h["source"]) for h in obj["status"]["history"]]


def wait_provider_ready(stack: Stack, namespace: str, name: str,
                        timeout: float = 60.0) -> Manifest:
    deadline = time.monotonic() + timeout
    obj: Manifest = {}
    while time.monotonic() < deadline:
        out = stack.kube.kubectl("get", "paymentprovider", name, "-n", namespace, "-o", "json")
        obj = json.loads(out.stdout)
        conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        if (conditions.get("Ready", {}).get("status") == "True"
                and conditions.get("Synced", {}).get("status") == "True"):
            return obj
        time.sleep(0.3)
    raise AssertionError(f"provider {namespace}/{name} not ready: {obj.get('status')}")


@pytest.fixture(scope="session")
def razorpay_tenant(stack: Stack, tmp_path_factory: pytest.TempPathFactory,
                    ) -> Iterator[RazorpayTenant]:
    directory: Path = tmp_path_factory.mktemp("razorpay")
    with RazorpayEmulatorProcess(directory / "razorpay.log") as emulator:
        control = RazorpayControl(emulator.base_url)
        key_id, key_secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        account_id = control.create_account({key_id: key_secret})["id"]
        signing = secrets.token_urlsafe(24)
        with solo_operator(stack, directory, PAYKUBE_RAZORPAY_API_BASE=emulator.base_url,
                           PAYKUBE_POLL_MIN_INTERVAL="2") as solo:
            create_provider(stack.kube, solo.namespace, PROVIDER, f"{key_id}:{key_secret}",
                            signing_secret=signing, type="razorpay", accountId=account_id)
            provider = wait_provider_ready(stack, solo.namespace, PROVIDER)
            status = provider["status"]
            assert (status["accountId"], status["mode"]) == (account_id, "test")
            route = status["webhookPath"]
            assert route == f"/webhooks/razorpay/ns/{solo.namespace}/{PROVIDER}"
            control.add_webhook(f"{stack.webhook.url}{route}", signing, account_id=account_id)
            try:
                yield RazorpayTenant(stack, solo, control, emulator.base_url, key_id,
                                     key_secret, signing, account_id, route)
            finally:
                control.close()
