"""Operator throughput: apply N PaymentSessions at once against the Stripe emulator.

    python bench/operator_bench.py --sessions 100 1000 --rate 25 --rate-sessions 300

Reports time until all are Open, sessions/s, p50/p99 from creation to Open (both seen on
one kube watch stream, so the figures carry no polling step), Stripe calls per session,
operator CPU seconds and peak RSS; then, with the operator's limiter and the emulator
both set to R requests/s, the achieved rate of ALL Stripe calls (every /v1/ request the
emulator saw: creates, polls, retries) as a fraction of R, the busiest 1 s window, and
the number of 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import percentile, platform, process_stats
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.apicalls import per_object_calls, request_counts
from paykube_dev.kube import ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_operator
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

API_KEY = "sk_test_bench"


@dataclass
class Timeline:
    """When the watch first saw each object, and when it first saw it Open (monotonic)."""

    created: dict[str, float] = field(default_factory=dict)
    opened: dict[str, float] = field(default_factory=dict)

    def see(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        self.created.setdefault(name, now)
        if obj.get("status", {}).get("phase") == "Open":
            self.opened.setdefault(name, now)


async def watch_until_open(kube: KubeClient, namespace: str, version: str, count: int,
                           timeline: Timeline) -> None:
    """Follow the watch (resuming after its server timeout, relisting after a 410)."""
    while len(timeline.opened) < count:
        async for kind, obj in kube.watch_sessions(namespace, version, server_timeout=120):
            if kind == "ERROR":  # 410 Gone: history compacted, start from a fresh list
                items, version = await kube.list_sessions_at(namespace)
                for item in items:
                    timeline.see(item, time.monotonic())
                break
            version = obj["metadata"].get("resourceVersion", version)
            if kind in ("ADDED", "MODIFIED"):
                timeline.see(obj, time.monotonic())
                if len(timeline.opened) >= count:
                    return


async def apply_and_watch(plane: ControlPlane, namespace: str, count: int,
                          limit: float) -> tuple[Timeline, float]:
    """Apply `count` objects in one kubectl call; returns the timeline and the apply start."""
    timeline = Timeline()
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        _, version = await kube.list_sessions_at(namespace)  # the watch starts before apply
        watching = asyncio.create_task(
            watch_until_open(kube, namespace, version, count, timeline))
        applied = time.monotonic()
        await asyncio.to_thread(plane.kubectl, "apply", "-f", "-",
                                input=session_list(namespace, count))
        with contextlib.suppress(TimeoutError):  # report what opened in the time given
            await asyncio.wait_for(watching, limit)
    return timeline, applied


def busiest_second(times: list[float]) -> int:
    """The most requests in any 1 s window (a sliding window over the sorted times)."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


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
            counted = request_counts(plane)
            timeline, applied = asyncio.run(apply_and_watch(plane, namespace, count, 900))
            after = process_stats(operator.proc.pid)
            time.sleep(1.0)  # kopf's bookkeeping and the Events after the last Open
            api_calls = per_object_calls(counted, request_counts(plane),
                                         created_by_client=count)
            stats = control.stats()
            calls = [r for r in control.requests() if r["path"].startswith("/v1/")]
        finally:
            operator.stop()
    opened = timeline.opened
    latencies = sorted(at - timeline.created[name] for name, at in opened.items())
    total = (max(opened.values()) - applied) if opened else float("nan")
    label = f"rate limit {rate:.0f}/s" if rate else "no rate limit"
    print(f"\n== {count} sessions, {label} ==", flush=True)
    print(f"all Open:              {len(opened)}/{count} in {total:.1f} s after kubectl apply")
    print(f"throughput:            {len(opened) / total:.1f} sessions/s")
    print(f"created->Open p50/p99: {percentile(latencies, 0.5):.2f} s / "
          f"{percentile(latencies, 0.99):.2f} s (watch)")
    print(f"Stripe calls/session:  {stats['api_requests'] / count:.2f} "
          f"({stats['create_requests']} creates, {stats['sessions_created']} sessions)")
    detail = ", ".join(f"{v} {r}{'/' + s if s else ''} {n / count:.2f}"
                       for (v, r, s), n in sorted(api_calls.items()))
    print(f"API calls/session:     {sum(api_calls.values()) / count:.2f} "
          f"(apiserver_request_total: {detail})")
    print(f"operator CPU:          {after.cpu_seconds - before.cpu_seconds:.1f} s, "
          f"peak RSS {after.peak_rss_mib:.0f} MiB")
    if rate and len(calls) > 1:
        times = sorted(r["at"] for r in calls)
        span = times[-1] - times[0]
        achieved = (len(times) - 1) / span if span > 0 else float("nan")
        limited = sum(1 for r in calls if r["status"] == 429)
        print(f"Stripe call rate:      {achieved:.1f}/s = {achieved / rate:.0%} of R over "
              f"{span:.1f} s ({len(calls)} calls, all /v1/ requests); busiest 1 s: "
              f"{busiest_second(times)}; 429s: {limited}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--rate-sessions", type=int, default=300,
                        help="sessions for the rate-limited run (300 at 25/s: about 12 s)")
    args = parser.parse_args(argv)
    with platform() as (plane, directory):
        for count in args.sessions:
            run(plane, directory, count, None)
        if args.rate > 0:
            run(plane, directory, args.rate_sessions, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
