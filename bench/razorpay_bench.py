"""Creates per second by provider: the same N PaymentSessions applied at once, once through
a PaymentProvider of type stripe and once through one of type razorpay, each on its
emulator, with the same operator settings (no rate limit: the operator and the emulator are
what is measured).

    python bench/razorpay_bench.py --sessions 300

Prints one row per provider (time until all are Open, sessions/s, p50/p99 created->Open on
one watch stream, PSP calls and operator CPU per session) and Razorpay's throughput as a
ratio of Stripe's measured in the same run. Kept apart from operator_bench.py so that the
two can change independently.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import percentile, platform, process_stats
from bench.operator_bench import Timeline, watch_until_open
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import ControlPlane
from paykube_dev.programs import start_operator
from paykube_dev.razorpay_emulator import RazorpayControl, RazorpayEmulatorProcess
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

STRIPE_KEY = "sk_test_bench_provider"
RAZORPAY_KEY = ("rzp_test_BenchKey01", "bench-razorpay-secret")
CLUSTER_NAMESPACE = "paykube-system"


@dataclass
class Row:
    provider: str
    count: int
    opened: int
    seconds: float
    p50: float
    p99: float
    calls: int
    cpu: float

    @property
    def rate(self) -> float:
        return self.opened / self.seconds if self.seconds > 0 else float("nan")


def sessions(namespace: str, count: int, provider_ref: dict[str, str], currency: str) -> str:
    spec_ref = {"providerRef": provider_ref}
    items = [{"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
              "metadata": {"name": f"bench-{i:05d}", "namespace": namespace},
              "spec": {"amount": 1000 + i, "currency": currency, **spec_ref,
                       "successUrl": "https://shop.example/ok",
                       "cancelUrl": "https://shop.example/cart"}}
             for i in range(count)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


async def apply_and_watch(plane: ControlPlane, namespace: str, manifests: str, count: int,
                          limit: float) -> tuple[Timeline, float]:
    timeline = Timeline()
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        _, version = await kube.list_sessions_at(namespace)
        watching = asyncio.create_task(
            watch_until_open(kube, namespace, version, count, timeline))
        applied = time.monotonic()
        await asyncio.to_thread(plane.kubectl, "apply", "-f", "-", input=manifests)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watching, limit)
    return timeline, applied


def provider_object(plane: ControlPlane, namespace: str, spec: dict[str, object]) -> None:
    """A PaymentProvider `spec["type"]` in `namespace` with its key and signing Secrets
    (both providers are resolved the same way: object, Secret, then the PSP call)."""
    plane.kubectl("create", "secret", "generic", "psp-signing", "-n", namespace,
                  "--from-literal=webhookSecrets=bench-signing")
    provider = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentProvider",
                "metadata": {"name": "psp", "namespace": namespace},
                "spec": {"apiKey": {"secretRef": {"name": "psp-key"}},
                         "signingSecrets": {"secretRef": {"name": "psp-signing"}}, **spec}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(provider))


@contextlib.contextmanager
def stripe_account(plane: ControlPlane, directory: Path, namespace: str,
                   ) -> Iterator[tuple[dict[str, str], str, Callable[[], int]]]:
    """(operator env, manifests' currency, PSP API calls so far): a PaymentProvider of type
    stripe in `namespace`, on the Stripe emulator."""
    with EmulatorProcess(directory / "stripe-emulator.log") as emulator:
        control = EmulatorControl(emulator.base_url)
        plane.kubectl("create", "secret", "generic", "psp-key", "-n", namespace,
                      f"--from-literal=apiKey={STRIPE_KEY}")
        provider_object(plane, namespace, {"type": "stripe"})
        yield ({"PAYKUBE_STRIPE_API_BASE": emulator.base_url}, "usd",
               lambda: int(control.stats()["api_requests"]))


@contextlib.contextmanager
def razorpay_account(plane: ControlPlane, directory: Path, namespace: str,
                     ) -> Iterator[tuple[dict[str, str], str, Callable[[], int]]]:
    """A PaymentProvider of type razorpay in `namespace`, on the Razorpay emulator."""
    with RazorpayEmulatorProcess(directory / "razorpay-emulator.log") as emulator:
        control = RazorpayControl(emulator.base_url)
        account = control.create_account(dict([RAZORPAY_KEY]))["id"]
        plane.kubectl("create", "secret", "generic", "psp-key", "-n", namespace,
                      f"--from-literal=apiKey={RAZORPAY_KEY[0]}:{RAZORPAY_KEY[1]}")
        provider_object(plane, namespace, {"type": "razorpay", "accountId": account})
        yield ({"PAYKUBE_RAZORPAY_API_BASE": emulator.base_url}, "inr",
               lambda: len(control.requests()))


def run(plane: ControlPlane, directory: Path, provider: str, count: int) -> Row:
    namespace = f"bench-{provider}-{count}"
    plane.kubectl("create", "namespace", namespace)
    account = stripe_account if provider == "stripe" else razorpay_account
    with account(plane, directory, namespace) as (env, currency, calls):
        env |= {"PAYKUBE_NAMESPACES": namespace, "PAYKUBE_LOG_LEVEL": "WARNING",
                "PAYKUBE_STRIPE_RATE_LIMIT": "10000", "PAYKUBE_RAZORPAY_RATE_LIMIT": "10000",
                "PAYKUBE_POLL_MIN_INTERVAL": "60", "PAYKUBE_CLUSTER_NAMESPACE": CLUSTER_NAMESPACE}
        operator = start_operator(plane.kubeconfig, directory / f"operator-{provider}.log", env)
        try:
            ref = {"kind": "PaymentProvider", "name": "psp"}
            time.sleep(2.0)  # the provider's first key check is not part of the creates
            before, calls_before = process_stats(operator.proc.pid), calls()
            timeline, applied = asyncio.run(apply_and_watch(
                plane, namespace, sessions(namespace, count, ref, currency), count, 900))
            after = process_stats(operator.proc.pid)
            made = calls() - calls_before
        finally:
            operator.stop()
    opened = timeline.opened
    latencies = sorted(at - timeline.created[name] for name, at in opened.items())
    total = (max(opened.values()) - applied) if opened else float("nan")
    return Row(provider, count, len(opened), total, percentile(latencies, 0.5),
               percentile(latencies, 0.99), made, after.cpu_seconds - before.cpu_seconds)


def report(rows: list[Row]) -> None:
    print(f"\n{'provider':10s} {'sessions':>8s} {'all Open':>9s} {'sessions/s':>11s} "
          f"{'p50':>6s} {'p99':>6s} {'calls/sess':>10s} {'CPU ms/sess':>11s}")
    for row in rows:
        print(f"{row.provider:10s} {row.opened:>4d}/{row.count:<4d} {row.seconds:>8.1f}s "
              f"{row.rate:>11.1f} {row.p50:>5.2f}s {row.p99:>5.2f}s "
              f"{row.calls / row.count:>10.2f} {1000 * row.cpu / row.count:>11.1f}")
    by = {row.provider: row for row in rows}
    if "stripe" in by and "razorpay" in by:
        print(f"Razorpay creates/s = {by['razorpay'].rate / by['stripe'].rate:.2f} x Stripe's "
              "(same run, same operator settings)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args(argv)
    with platform() as (plane, directory):
        plane.kubectl("create", "namespace", CLUSTER_NAMESPACE)
        rows = [run(plane, directory, provider, args.sessions)
                for provider in ("stripe", "razorpay")]
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
