"""`make demo`: the whole of paykube on this machine, one payment through its lifecycle.

Starts the local control plane, installs the CRD, starts the Stripe and Razorpay emulators,
the webhook and the operator, applies crds/examples/, and pays sessions through signed
webhooks: Stripe ones and a Razorpay Payment Link, each on its own account's route.
With --keep it keeps running until Ctrl-C so you can play with kubectl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from paykube.mirror.store import make_engine
from paykube_dev.dashboard_program import DEMO_LOGIN, start_demo_dashboard
from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.proc import CACHE_DIR, wait_until
from paykube_dev.programs import Program, start_operator, start_webhook
from paykube_dev.razorpay_demo import pay as pay_razorpay
from paykube_dev.razorpay_demo import prepare as prepare_razorpay
from paykube_dev.razorpay_emulator import RazorpayControl, RazorpayEmulatorProcess
from paykube_dev.services import ActiveMQ, start_activemq, start_mariadb
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

API_KEY = "sk_test_paykube_demo"
WEBHOOK_SECRET = "whsec_paykube_demo"
NAMESPACE = "shop"
TENANT = "team-b"  # a namespace with its own Stripe account, registered by the operator
TENANT_KEY = "sk_test_paykube_demo_team_b"
OWN_KEY = "sk_test_paykube_demo_shop_own"
CLUSTER_NAMESPACE = "paykube-system"
EVENTS_QUEUE = "/queue/Consumer.demo.VirtualTopic.paykube.payments"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(plane: ControlPlane, *args: str) -> str:
    print(f"$ kubectl {' '.join(args)}")
    result = plane.kubectl(*args, check=False)
    output = (result.stdout + result.stderr).rstrip()
    print(output, flush=True)
    return output


def phase(plane: ControlPlane, name: str, namespace: str = NAMESPACE) -> str | None:
    out = plane.kubectl("get", "paysess", name, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    value: str | None = obj.get("status", {}).get("phase")
    return value


class EventTap:
    """A STOMP consumer of the payment events (a consumer group of the virtual topic)."""

    def __init__(self, broker: ActiveMQ) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.conn = broker.connect()
        self.conn.set_listener("demo", self)
        self.conn.subscribe(EVENTS_QUEUE, id="demo", ack="auto")

    def on_message(self, frame: Any) -> None:
        self.events.put(json.loads(frame.body))

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        out, deadline = [], time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                out.append(self.events.get(timeout=remaining))
            except queue.Empty:
                break
        return out


def tenant_payment(plane: ControlPlane, control: EmulatorControl) -> str:
    """A second namespace brings its own Stripe account: the operator checks the key,
    registers the webhook endpoint at Stripe (the emulator) and keeps its signing secret;
    the payment reaches Paid through that account's own webhook route."""
    say(f"Namespace {TENANT} brings its own Stripe account as a PaymentProvider "
        "(webhook.register: true)")
    plane.kubectl("create", "namespace", TENANT)
    plane.kubectl("create", "secret", "generic", "stripe-api-key", "-n", TENANT,
                  f"--from-literal=apiKey={TENANT_KEY}")
    provider = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentProvider",
                "metadata": {"name": "stripe", "namespace": TENANT},
                "spec": {"type": "stripe", "apiKey": {"secretRef": {"name": "stripe-api-key"}},
                         "webhook": {"register": True}}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(provider))

    def ready() -> bool:
        out = plane.kubectl("get", "payprov", "stripe", "-n", TENANT, "-o",
                            "jsonpath={.status.webhookEndpointId}", check=False).stdout
        return out.startswith("we_")

    wait_until(ready, timeout=60, what=f"{TENANT}'s provider registered", interval=0.3)
    show(plane, "get", "payprov", "-n", TENANT, "-o", "wide")
    order = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
             "metadata": {"name": "order-b-7", "namespace": TENANT},
             "spec": {"providerRef": {"kind": "PaymentProvider", "name": "stripe"},
                      "amount": 4900, "currency": "eur",
                      "successUrl": "https://team-b.example.com/thanks",
                      "cancelUrl": "https://team-b.example.com/cart"}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(order))
    wait_until(lambda: phase(plane, "order-b-7", TENANT) == "Open", timeout=60,
               what="order-b-7 Open", interval=0.3)
    session = plane.kubectl("get", "paysess", "order-b-7", "-n", TENANT, "-o",
                            "jsonpath={.status.sessionId}").stdout
    control.pay(session)
    wait_until(lambda: phase(plane, "order-b-7", TENANT) == "Paid", timeout=60,
               what="order-b-7 Paid", interval=0.3)
    show(plane, "get", "paysess", "-A", "-o", "wide")
    return plane.kubectl("get", "paysess", "order-b-7", "-n", TENANT, "-o",
                         "jsonpath={.status.history[?(@.phase==\"Paid\")].source}"
                         ).stdout.strip()


def refund_demo(plane: ControlPlane, tap: EventTap, database_url: str) -> None:
    """Part of the paid order-1001 goes back: the PaymentRefund example, its phase in
    `kubectl get`, its events on the bus and its rows in the mirror."""
    say("Refunding part of order-1001 (crds/examples/refunds/paymentrefund-partial.yaml)")
    show(plane, "apply", "-n", NAMESPACE, "-f",
         str(REPO / "crds" / "examples" / "refunds" / "paymentrefund-partial.yaml"))

    def refund_phase() -> str:
        return plane.kubectl("get", "payref", "order-1001-shipping", "-n", NAMESPACE, "-o",
                             "jsonpath={.status.phase}", check=False).stdout.strip()

    wait_until(lambda: refund_phase() == "Succeeded", timeout=60,
               what="order-1001-shipping Succeeded", interval=0.3)
    wait_until(lambda: plane.kubectl(
        "get", "paysess", "order-1001", "-n", NAMESPACE, "-o",
        "jsonpath={.status.amountRefunded}").stdout.strip() == "500", timeout=60,
        what="order-1001 amountRefunded 500", interval=0.3)
    show(plane, "get", "payref", "-n", NAMESPACE)
    show(plane, "get", "paysess", "order-1001", "-n", NAMESPACE, "-o", "wide")
    say("Refund events received from ActiveMQ")
    seen: set[str] = set()
    for event in tap.drain(3):
        if event["type"].startswith("dev.paykube.paymentrefund.") and event["id"] not in seen:
            seen.add(event["id"])
            print(f"{event['type']:40s} id={event['id']}")
    say("The refund and the money ledger in the mirror")
    deadline = time.monotonic() + 30
    rows: list[Any] = []
    while time.monotonic() < deadline:
        with make_engine(database_url).connect() as conn:
            rows = list(conn.execute(text(
                "SELECT name, phase, amount, currency, refund_id FROM payment_refunds "
                "ORDER BY name")))
        if any(r.phase == "Succeeded" for r in rows):
            break
        time.sleep(0.5)
    for row in rows:
        print(f"payment_refunds: {row.name:20s} {row.phase:10s} {row.amount:>7} "
              f"{row.currency} {row.refund_id}")
    with make_engine(database_url).connect() as conn:
        for row in conn.execute(text(
                "SELECT kind, SUM(amount) AS total, currency FROM payment_ledger "
                "WHERE name IN ('order-1001', 'order-1001-shipping') "
                "GROUP BY kind, currency ORDER BY kind")):
            print(f"payment_ledger: {row.kind:8s} {int(row.total):>7} {row.currency}")


def run(directory: Path, keep: bool) -> None:
    started = time.monotonic()
    say("Starting the local control plane (etcd, kube-apiserver with RBAC, controller-manager),"
        " ActiveMQ, MariaDB and the Stripe emulator")
    with ControlPlane.started(directory / "kube") as plane, \
            start_activemq(directory / "activemq") as broker, \
            start_mariadb(directory / "mariadb") as database, \
            EmulatorProcess(directory / "stripe-emulator.log",
                            extra_args=("--hosted-checkout",)) as emulator, \
            RazorpayEmulatorProcess(directory / "razorpay-emulator.log",
                                    extra_args=("--hosted-links",)) as razorpay:
        print(f"platform up in {time.monotonic() - started:.1f}s")
        tap = EventTap(broker)
        print(f"export KUBECONFIG={plane.kubeconfig}")
        say("Installing the CRDs: PaymentSession, PaymentRefund, PaymentProvider, "
            "ClusterPaymentProvider")
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            plane.install_crd(crd)
        show(plane, "get", "crd")
        plane.kubectl("create", "namespace", CLUSTER_NAMESPACE)
        env = {"PAYKUBE_STRIPE_API_BASE": emulator.base_url, "PAYKUBE_STRIPE_API_KEY": API_KEY,
               "PAYKUBE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
               # The webhook brings Paid; the backstop poll would only race it here.
               "PAYKUBE_POLL_MIN_INTERVAL": "30",
               "PAYKUBE_BROKER_URLS": f"127.0.0.1:{broker.stomp_port}",
               "PAYKUBE_DATABASE_URL": database.url,
               "PAYKUBE_CLUSTER_NAMESPACE": CLUSTER_NAMESPACE,
               "PAYKUBE_PROVIDER_RESYNC": "5", "PAYKUBE_RAZORPAY_API_BASE": razorpay.base_url}
        say("Starting the paykube webhook and operator")
        webhook = start_webhook(plane.kubeconfig, directory / "webhook.log", env)
        operator = start_operator(plane.kubeconfig, directory / "operator.log",
                                  {**env, "PAYKUBE_WEBHOOK_PUBLIC_URL": webhook.url})
        control = EmulatorControl(emulator.base_url)
        control.add_webhook_endpoint(f"{webhook.url}/webhooks/stripe", WEBHOOK_SECRET)
        print(f"webhook at {webhook.url}/webhooks/stripe, logs in {directory}")
        dashboard: Program | None = None
        try:
            say(f"Applying crds/examples/ in namespace {NAMESPACE}")
            plane.kubectl("create", "namespace", NAMESPACE)
            # The shop's own account for invoice-2024-0042 (crds/examples/providers/).
            plane.kubectl("create", "secret", "generic", "stripe-api-key", "-n", NAMESPACE,
                          f"--from-literal=apiKey={OWN_KEY}")
            plane.kubectl("create", "secret", "generic", "stripe-webhook-signing", "-n",
                          NAMESPACE, "--from-literal=webhookSecrets=whsec_paykube_demo_own")
            show(plane, "apply", "-n", NAMESPACE, "-f",
                 str(REPO / "crds" / "examples" / "providers" / "paymentprovider.yaml"))
            # The shop's Razorpay account for school-fees-term-2 (a Payment Link).
            razorpay_control = RazorpayControl(razorpay.base_url)
            prepare_razorpay(plane, NAMESPACE, razorpay_control)
            show(plane, "apply", "-n", NAMESPACE, "-f", str(REPO / "crds" / "examples"))
            say("An invalid manifest is refused by the API server itself")
            show(plane, "apply", "-n", NAMESPACE, "-f",
                 str(REPO / "crds" / "examples" / "invalid" / "currency-upper-case.yaml"))
            wait_until(lambda: phase(plane, "order-1001") == "Open", timeout=60,
                       what="order-1001 Open", interval=0.3)
            show(plane, "get", "paysess", "-n", NAMESPACE, "-o", "wide")
            say("The customer pays order-1001; Stripe (the emulator) sends a signed webhook")
            out = plane.kubectl("get", "paysess", "order-1001", "-n", NAMESPACE, "-o",
                                "jsonpath={.status.sessionId}").stdout
            control.pay(out)
            wait_until(lambda: phase(plane, "order-1001") == "Paid", timeout=60,
                       what="order-1001 Paid", interval=0.3)
            show(plane, "get", "paysess", "-n", NAMESPACE)
            paid_by = plane.kubectl("get", "paysess", "order-1001", "-n", NAMESPACE, "-o",
                                    "jsonpath={.status.history[?(@.phase==\"Paid\")].source}"
                                    ).stdout.strip()
            print(f"Paid was recorded by: {paid_by}")
            say("Its history and Events")
            show(plane, "get", "paysess", "order-1001", "-n", NAMESPACE, "-o",
                 "jsonpath={range .status.history[*]}{.phase}{'\\t'}{.source}{'\\t'}{.at}"
                 "{'\\n'}{end}")
            show(plane, "get", "events", "-n", NAMESPACE,
                 "--field-selector=involvedObject.name=order-1001")
            say("Payment events received from ActiveMQ (CloudEvents, one per phase)")
            seen: set[str] = set()  # delivery is at least once: a consumer drops repeats by id
            for event in tap.drain(3):
                if event["data"]["name"] == "order-1001" and event["id"] not in seen:
                    seen.add(event["id"])
                    print(f"{event['type']:40s} id={event['id']}")
            say("The reporting mirror in MariaDB")
            with make_engine(database.url).connect() as conn:
                rows = conn.execute(text(
                    "SELECT name, phase, amount, currency FROM payment_sessions ORDER BY name"))
                for row in rows:
                    print(f"payment_sessions: {row.name:20s} {row.phase:8s} {row.amount:>7} "
                          f"{row.currency}")
            refund_demo(plane, tap, database.url)
            tenant_paid_by = tenant_payment(plane, control)
            say("The shop's Razorpay Payment Link, paid in two parts, each part reported by "
                "Razorpay's own signed webhook on the account's route")
            razorpay_paid_by = pay_razorpay(plane, NAMESPACE, razorpay_control, webhook.url,
                                            show, phase)
            show(plane, "get", "paysess", "-A", "-o", "wide")
            dashboard = start_demo_dashboard(database, directory)
            say(f"The dashboard: {dashboard.url}/ (login {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]}), "
                "over the mirror with a few hundred sessions of the last days added")
            say(f"Demo done in {time.monotonic() - started:.1f}s: order-1001 went Pending -> "
                f"Open -> Paid (through the {paid_by}) and got 5.00 refunded; {TENANT}'s "
                f"order through its own account and route ({tenant_paid_by}); "
                "school-fees-term-2 through Razorpay went Open -> Processing -> Paid "
                f"(through the {razorpay_paid_by})")
            if keep:
                print(f"Still running; try: export KUBECONFIG={plane.kubeconfig}; "
                      "kubectl get paysess -A. Ctrl-C stops everything.")
                with contextlib.suppress(KeyboardInterrupt):
                    while operator.proc.poll() is None and webhook.proc.poll() is None:
                        time.sleep(1)
        finally:
            if dashboard is not None:
                dashboard.stop()
            operator.stop()
            webhook.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--dir", type=Path, default=CACHE_DIR / "run" / "demo")
    args = parser.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    run(args.dir, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
