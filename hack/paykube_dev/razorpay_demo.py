"""The demo's Razorpay payment: the shop's Razorpay account as a PaymentProvider of type
razorpay (crds/examples/providers/razorpay.yaml), its webhook added at the Razorpay emulator
on the provider's own route (status.webhookPath, as a merchant adds it on the Dashboard),
and the example Payment Link (crds/examples/paymentsession-razorpay.yaml) paid in two parts,
each reported by its own signed webhook."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.proc import wait_until
from paykube_dev.razorpay_emulator import RazorpayControl

KEY_ID = "rzp_test_PaykubeDemo01"
KEY_SECRET = "paykube-demo-razorpay-secret"  # the emulator's demo key
SIGNING = "paykube-demo-razorpay-webhook"
PROVIDER = REPO / "crds" / "examples" / "providers" / "razorpay.yaml"
ORDER = "school-fees-term-2"  # crds/examples/paymentsession-razorpay.yaml


def account_id() -> str:
    """The account the example provider declares (spec.accountId)."""
    for line in PROVIDER.read_text().splitlines():
        if line.strip().startswith("accountId:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{PROVIDER} declares no accountId")


def prepare(plane: ControlPlane, namespace: str, control: RazorpayControl) -> None:
    """The account at Razorpay (the emulator) and its key and webhook-secret Secrets, before
    the examples are applied."""
    control.create_account({KEY_ID: KEY_SECRET}, account_id=account_id(), name="Demo school")
    plane.kubectl("create", "secret", "generic", "razorpay-api-key", "-n", namespace,
                  f"--from-literal=apiKey={KEY_ID}:{KEY_SECRET}")
    plane.kubectl("create", "secret", "generic", "razorpay-webhook-secret", "-n", namespace,
                  f"--from-literal=webhookSecrets={SIGNING}")
    plane.kubectl("apply", "-n", namespace, "-f", str(PROVIDER))


def pay(plane: ControlPlane, namespace: str, control: RazorpayControl, webhook_url: str,
        show: Callable[..., str], phase: Callable[[ControlPlane, str, str], str | None],
        ) -> str:
    """Adds the webhook, pays the link in two parts (Processing, then Paid); returns who
    recorded Paid."""
    def provider() -> dict[str, Any]:
        out = plane.kubectl("get", "payprov", "razorpay", "-n", namespace, "-o", "json").stdout
        status: dict[str, Any] = json.loads(out).get("status") or {}
        return status

    wait_until(lambda: bool(provider().get("accountId")), timeout=60,
               what="the Razorpay provider checked", interval=0.3)
    route = provider()["webhookPath"]
    control.add_webhook(f"{webhook_url}{route}", SIGNING, account_id=account_id())
    show(plane, "get", "payprov", "-n", namespace, "-o", "wide")
    wait_until(lambda: phase(plane, ORDER, namespace) == "Open", timeout=60,
               what=f"{ORDER} Open", interval=0.3)
    link = plane.kubectl("get", "paysess", ORDER, "-n", namespace, "-o",
                         "jsonpath={.status.sessionId}").stdout
    control.part_pay(link, 1000000)
    wait_until(lambda: phase(plane, ORDER, namespace) == "Processing", timeout=60,
               what=f"{ORDER} Processing", interval=0.3)
    control.pay(link)
    wait_until(lambda: phase(plane, ORDER, namespace) == "Paid", timeout=60,
               what=f"{ORDER} Paid", interval=0.3)
    show(plane, "get", "paysess", ORDER, "-n", namespace, "-o",
         "jsonpath={range .status.history[*]}{.phase}{'\\t'}{.source}{'\\t'}{.eventId}"
         "{'\\n'}{end}")
    return plane.kubectl("get", "paysess", ORDER, "-n", namespace, "-o",
                         "jsonpath={.status.history[?(@.phase==\"Paid\")].source}"
                         ).stdout.strip()
