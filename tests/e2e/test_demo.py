"""`make demo` runs end to end: its own platform, a payment Open -> Paid through the
signed webhook, the CloudEvents from ActiveMQ and the mirror row in MariaDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_pays_a_session_through_the_webhook(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(REPO / d) for d in ("operator", "webhook", "hack"))}
    done = subprocess.run(
        [sys.executable, "-m", "paykube_dev.demo", "--dir", str(tmp_path / "demo")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 0, f"demo failed:\n{out[-3000:]}\n{done.stderr[-3000:]}"
    assert "Paid was recorded by: webhook" in out
    assert "went Pending -> Open -> Paid (through the webhook)" in out
    # A namespace with its own account, registered by the operator, paid through its route.
    assert "team-b's order through its own account and route (webhook)" in out
    assert "/webhooks/stripe/ns/team-b/stripe" in out
    # Beside the Stripe ones, a Razorpay Payment Link paid through its own signed webhook.
    assert ("school-fees-term-2 through Razorpay went Open -> Processing -> Paid (through "
            "the webhook)") in out
    assert "/webhooks/razorpay/ns/shop/razorpay" in out
    assert 'is invalid' in out or "Invalid value" in out, "the invalid manifest was not refused"
    published = [line.split()[0] for line in out.splitlines()
                 if line.startswith("dev.paykube.paymentsession.")]
    assert published == [f"dev.paykube.paymentsession.{p}" for p in ("pending", "open", "paid")]
    assert any(line.startswith("payment_sessions: order-1001") and " Paid " in line
               for line in out.splitlines())
    # Part of order-1001 refunded: kubectl, the bus and the mirror show it.
    assert "went Pending -> Open -> Paid (through the webhook) and got 5.00 refunded" in out
    lines = out.splitlines()
    assert any(line.startswith("order-1001-shipping") and "Succeeded" in line
               for line in lines), "kubectl get payref shows the refund"
    refund_events = sorted(line.split()[0] for line in lines
                           if line.startswith("dev.paykube.paymentrefund."))
    assert refund_events == ["dev.paykube.paymentrefund.pending",
                             "dev.paykube.paymentrefund.succeeded"]
    assert any(line.startswith("payment_refunds: order-1001-shipping") and "Succeeded" in line
               and " 500 " in line for line in lines)
    assert any(line.startswith("payment_ledger: refund") and "-500" in line for line in lines)
