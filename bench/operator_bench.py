"""Operator throughput: apply N PaymentSessions at once against the Stripe emulator.

    python bench/operator_bench.py --sessions 100 1000 --rate 25

Reports time until all are Open, sessions/s, p50/p99 apply->Open (observed by a client
listing every 0.25 s), Stripe calls per session, operator CPU seconds and peak RSS; then,
with the operator's limiter and the emulator both set to R requests/s, the achieved Stripe
call rate as a fraction of R and the number of 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bench.common import percentile, platform, process_stats
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_operator
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

API_KEY = "sk_test_bench"


async def wait_all_open(plane: ControlPlane, namespace: str, count: int, applied: float,
                        limit: float) -> dict[str, float]:
    opened: dict[str, float] = {}
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        deadline = time.monotonic() + limit
        while len(opened) < count and time.monotonic() < deadline:
            now = time.monotonic()
            for item in await kube.list_sessions(namespace):
                name = item["metadata"]["name"]
                if name not in opened and item.get("status", {}).get("phase") == "Open":
                    opened[name] = now - applied
            await asyncio.sleep(0.25)
    return opened


def run(plane: ControlPlane, directory: Path, count: int, rate: float | None) -> None:
    namespace = f"bench-{count}-{'r' if rate else 'u'}"
    plane.kubectl("create", "namespace", namespace)
    with EmulatorProcess(directory / f"emulator-{namespace}.log") as emulator:
        control = EmulatorControl(emulator.base_url)
        if rate:
            control.set_rate_limit(rate)
        env = {"PAYKUBE_STRIPE_API_BASE": emulator.base_url, "PAYKUBE_STRIPE_API_KEY": API_KEY,
               "PAYKUBE_NAMESPACES": namespace, "PAYKUBE_LOG_LEVEL": "WARNING",
               "PAYKUBE_STRIPE_RATE_LIMIT": str(rate or 10_000),
               "PAYKUBE_POLL_MIN_INTERVAL": "60"}
        operator = start_operator(plane.kubeconfig, directory / f"operator-{namespace}.log",
                                  env)
        try:
            before = process_stats(operator.proc.pid)
            applied = time.monotonic()
            plane.kubectl("apply", "-f", "-", input=session_list(namespace, count))
            opened = asyncio.run(wait_all_open(plane, namespace, count, applied, 600))
            total = time.monotonic() - applied
            after = process_stats(operator.proc.pid)
            stats = control.stats()
            requests = control.requests("/v1/checkout/sessions")
        finally:
            operator.stop()
    latencies = sorted(opened.values())
    label = f"rate limit {rate:.0f}/s" if rate else "no rate limit"
    print(f"\n== {count} sessions, {label} ==", flush=True)
    print(f"all Open:            {len(opened)}/{count} in {total:.1f} s")
    print(f"throughput:          {len(opened) / total:.1f} sessions/s")
    print(f"apply->Open p50/p99: {percentile(latencies, 0.5):.2f} s / "
          f"{percentile(latencies, 0.99):.2f} s")
    print(f"Stripe calls/session: {stats['api_requests'] / count:.2f}")
    print(f"operator CPU:        {after.cpu_seconds - before.cpu_seconds:.1f} s, "
          f"peak RSS {after.peak_rss_mib:.0f} MiB")
    if rate and requests:
        span = max(r["at"] for r in requests) - min(r["at"] for r in requests)
        achieved = (len(requests) - 1) / span if span > 0 else float("nan")
        limited = sum(1 for r in requests if r["status"] == 429)
        print(f"create call rate:    {achieved:.1f}/s = {achieved / rate:.0%} of R; "
              f"429s: {limited}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rate", type=float, default=25.0)
    args = parser.parse_args(argv)
    with platform() as (plane, directory):
        for count in args.sessions:
            run(plane, directory, count, None)
        run(plane, directory, args.sessions[0], args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
