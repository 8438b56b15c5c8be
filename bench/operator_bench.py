"""Operator throughput: N PaymentSessions created at once against the Stripe emulator,
next to the bare-loop ceiling measured in the same run.

    python bench/operator_bench.py --sessions 1000 --poll-min-interval 60
    python bench/operator_bench.py --sessions 10000 --observe 60 --rate 0 --kubectl 0

For each N: the objects are created by a fast concurrent client (32 POSTs at once, no
kubectl in the way); reported are the time until all are Open, sessions/s, how many were
Open at 25/50/75/100 % of that time (a burst must not advance in lockstep), p50/p99 from
creation to Open (both seen on one watch stream), Stripe calls and API calls per session
(the API server's own `apiserver_request_total`), the operator's CPU and peak RSS (and RSS
per object), every involved process's CPU sampled once a second, and the load average.
With `--observe S`, the operator then holds all N Open for S seconds and the bench counts
the Stripe calls per second its polling makes (PAYKUBE_POLL_MIN_INTERVAL as given, else the
operator's default).

Then the ceiling, with the operator stopped: a plain loop with paykube's own clients
(KubeClient, StripeProvider) that does per session what the design needs, counted from the
operator's own API calls in the run (status PATCHes, metadata PATCHes, Events) plus the one
Stripe create, at the operator's concurrency (RECONCILE_CONCURRENCY); printed as sessions/s
and the ratio operator / ceiling.

`--kubectl N` times `kubectl apply` of N objects once (for comparison; no operator);
`--rate R` adds a run with the operator's limiter and the emulator both at R requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.apiload import ApiTarget, create_sessions
from bench.common import (
    CpuSampler,
    load_average,
    percentile,
    plane_processes,
    platform,
    process_stats,
    run_like_paykube,
)
from bench.profiled import memory_summary, summary
from paykube.api.types import ObjectRef, PaymentSessionSpec
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube.operator.reconciler import RECONCILE_CONCURRENCY
from paykube.providers.base import CreateSession
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.stripe import StripeProvider
from paykube.settings import SecretStr
from paykube_dev.apicalls import per_object_calls, request_counts
from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.proc import free_port, start_process, wait_until
from paykube_dev.programs import Program, start_operator
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

API_KEY = "sk_test_bench"
Calls = Counter[tuple[str, str, str]]


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


async def create_and_watch(plane: ControlPlane, namespace: str, count: int,
                           limit: float, rate: float) -> tuple[Timeline, float, float]:
    """Create `count` objects with the fast client while watching; returns the timeline,
    when creating started and how long it took."""
    timeline = Timeline()
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        _, version = await kube.list_sessions_at(namespace)  # the watch starts first
        watching = asyncio.create_task(
            watch_until_open(kube, namespace, version, count, timeline))
        started = time.monotonic()
        await create_sessions(ApiTarget.from_kubeconfig(plane.kubeconfig), namespace,
                              session_list(namespace, count), rate=rate)
        creating = time.monotonic() - started
        with contextlib.suppress(TimeoutError):  # report what opened in the time given
            await asyncio.wait_for(watching, limit)
    return timeline, started, creating


def busiest_second(times: list[float]) -> int:
    """The most requests in any 1 s window (a sliding window over the sorted times)."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_by_quarter(timeline: Timeline, started: float) -> list[int]:
    """How many were Open at 25/50/75/100 % of the time until the last one was."""
    if not timeline.opened:
        return [0, 0, 0, 0]
    span = max(timeline.opened.values()) - started
    return [sum(1 for at in timeline.opened.values() if at - started <= span * q / 4)
            for q in (1, 2, 3, 4)]


def describe_calls(calls: Calls, count: int) -> str:
    detail = ", ".join(f"{v} {r}{'/' + s if s else ''} {n / count:.2f}"
                       for (v, r, s), n in sorted(calls.items()))
    return f"{sum(calls.values()) / count:.2f} ({detail})"


@dataclass(frozen=True)
class OperatorRun:
    count: int
    sessions_per_second: float
    calls: Calls


def start_profiled_operator(plane: ControlPlane, directory: Path, env: dict[str, str],
                            name: str, *, memory: bool = False) -> tuple[Program, Path]:
    """The operator as start_operator runs it, but under cProfile (bench/profiled.py); the
    profile is written when it stops. With `memory`, under tracemalloc instead: a snapshot
    is written on SIGUSR1."""
    out = directory / f"{name}.{'snapshot' if memory else 'prof'}"
    log = directory / f"{name}.log"
    port, metrics_port = free_port(), free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYKUBE_")}
    full["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "operator"), str(REPO / "webhook"), full.get("PYTHONPATH", "")])
    full.update({"KUBECONFIG": str(plane.kubeconfig), **env,
                 "PAYKUBE_OPERATOR_HOST": "127.0.0.1", "PAYKUBE_HEALTH_PORT": str(port),
                 "PAYKUBE_METRICS_PORT": str(metrics_port)})
    mode = ["--memory"] if memory else []
    proc = start_process([sys.executable, str(Path(__file__).with_name("profiled.py")),
                          *mode, str(out), "paykube.operator"], log=log, env=full)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=90, what="profiled operator", proc=proc, log=log, interval=0.2)
    return Program("operator", proc, log, port, metrics_port), out


def run(plane: ControlPlane, directory: Path, count: int, rate: float | None,
        poll_min_interval: float | None, observe: float, *,
        profile: bool = False, create_rate: float = 0.0, memory: bool = False,
        ) -> OperatorRun:
    namespace = (f"bench-{count}-{'r' if rate else 'u'}{'-p' if profile else ''}"
                 f"{'-m' if memory else ''}"
                 f"{'-paced' if create_rate else ''}")
    plane.kubectl("create", "namespace", namespace)
    with EmulatorProcess(directory / f"emulator-{namespace}.log") as emulator:
        control = EmulatorControl(emulator.base_url)
        if rate:
            control.set_rate_limit(rate)
        env = {"PAYKUBE_STRIPE_API_BASE": emulator.base_url, "PAYKUBE_STRIPE_API_KEY": API_KEY,
               "PAYKUBE_NAMESPACES": namespace, "PAYKUBE_LOG_LEVEL": "WARNING",
               "PAYKUBE_STRIPE_RATE_LIMIT": str(rate or 10_000)}
        if poll_min_interval is not None:
            env["PAYKUBE_POLL_MIN_INTERVAL"] = f"{poll_min_interval:g}"
        profiled: Path | None = None
        if profile or memory:
            operator, profiled = start_profiled_operator(plane, directory, env,
                                                         f"operator-{namespace}", memory=memory)
        else:
            operator = start_operator(plane.kubeconfig,
                                      directory / f"operator-{namespace}.log", env)
        pid = operator.proc.pid
        assert emulator.proc is not None
        processes = {"operator": pid, **plane_processes(plane),
                     "stripe emulator": emulator.proc.pid, "bench (creates, watch)": os.getpid()}
        load_before = load_average()
        try:
            time.sleep(2.0)  # the operator's start-up CPU is not the run's
            rss_before = rss_mib(pid)
            before = process_stats(pid)
            counted = request_counts(plane)
            with CpuSampler(processes) as cpu:
                timeline, started, creating = run_like_paykube(
                    create_and_watch(plane, namespace, count, 1800, create_rate))
                after = process_stats(pid)
                time.sleep(1.0)  # kopf's bookkeeping and the Events after the last Open
            api_calls = per_object_calls(counted, request_counts(plane),
                                         created_by_client=count)
            stats = control.stats()
            rss_open = rss_mib(pid)
            polling = observe_polls(control, plane, pid, observe, count) if observe else ""
            if memory and profiled is not None:
                os.kill(pid, signal.SIGUSR1)  # the snapshot, with all Open
                wait_until(profiled.exists, timeout=300, what="the memory snapshot",
                           proc=operator.proc, log=operator.log, interval=1.0)
            calls = [r for r in control.requests() if r["path"].startswith("/v1/")]
        finally:
            operator.stop()
    opened = timeline.opened
    latencies = sorted(at - timeline.created[name] for name, at in opened.items())
    total = (max(opened.values()) - started) if opened else float("nan")
    label = (f"rate limit {rate:.0f}/s" if rate else "no rate limit") + (
        ", operator under cProfile" if profile else "") + (
        ", operator under tracemalloc" if memory else "")
    quarters = open_by_quarter(timeline, started)
    print(f"\n== {count} sessions, {label} ==", flush=True)
    print(f"load average:          {load_before} at start, {load_average()} at end")
    pace = f"paced at {create_rate:g}/s" if create_rate else "all at once"
    print(f"created by the bench:  {count} in {creating:.1f} s "
          f"({count / creating:.0f}/s, 32 concurrent POSTs, {pace})")
    print(f"all Open:              {len(opened)}/{count} in {total:.1f} s after the first "
          f"create")
    print(f"throughput:            {len(opened) / total:.1f} sessions/s")
    print(f"Open at 25/50/75/100%: {' / '.join(str(n) for n in quarters)} of the time "
          f"({' / '.join(f'{n / count:.0%}' for n in quarters)})")
    print(f"created->Open p50/p99: {percentile(latencies, 0.5):.2f} s / "
          f"{percentile(latencies, 0.99):.2f} s (watch)")
    print(f"Stripe calls/session:  {stats['api_requests'] / count:.2f} "
          f"({stats['create_requests']} creates, {stats['sessions_created']} sessions)")
    print(f"API calls/session:     {describe_calls(api_calls, count)} "
          f"(apiserver_request_total, until all Open + 1 s)")
    print(f"operator CPU:          {after.cpu_seconds - before.cpu_seconds:.1f} s "
          f"({1000 * (after.cpu_seconds - before.cpu_seconds) / count:.1f} ms/session)")
    print(f"operator RSS:          {rss_before:.0f} MiB before, {rss_open:.0f} MiB with all "
          f"Open, peak {after.peak_rss_mib:.0f}"
          f" MiB; {(after.peak_rss_mib - rss_before) * 1024 / count:.1f} KiB per object")
    print(cpu.line())
    if polling:
        print(polling)
    if profiled is not None:
        print("\n".join(memory_summary(profiled) if memory else summary(profiled)))
    if rate and len(calls) > 1:
        times = sorted(r["at"] for r in calls)
        span = times[-1] - times[0]
        achieved = (len(times) - 1) / span if span > 0 else float("nan")
        limited = sum(1 for r in calls if r["status"] == 429)
        print(f"Stripe call rate:      {achieved:.1f}/s = {achieved / rate:.0%} of R over "
              f"{span:.1f} s ({len(calls)} calls, all /v1/ requests); busiest 1 s: "
              f"{busiest_second(times)}; 429s: {limited}")
    return OperatorRun(count, len(opened) / total, api_calls)


def observe_polls(control: EmulatorControl, plane: ControlPlane, pid: int, seconds: float,
                  count: int) -> str:
    """Hold all sessions Open for `seconds`: the Stripe calls/s the polling makes, the
    API calls it causes, and the operator's RSS and CPU meanwhile."""
    counted = request_counts(plane)
    cpu = process_stats(pid).cpu_seconds
    start = time.time()
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)
        peak = max(peak, rss_mib(pid))
    end = time.time()
    used = process_stats(pid).cpu_seconds - cpu
    polls = [r for r in control.requests()
             if r["path"].startswith("/v1/") and start <= r["at"] <= end]
    api = per_object_calls(counted, request_counts(plane), created_by_client=0)
    return (f"holding {count} Open for {end - start:.0f} s: {len(polls) / (end - start):.1f} "
            f"Stripe calls/s by polling ({len(polls)} calls; {Counter(r['method'] for r in polls)}"
            f"), API calls {sum(api.values()) / (end - start):.1f}/s ({dict(api)}), "
            f"operator CPU {used / (end - start):.0%} of a core, RSS up to {peak:.0f} MiB "
            f"({peak * 1024 / count:.1f} KiB per Open object, all included)")


async def bare_loop(plane: ControlPlane, emulator: EmulatorProcess, namespace: str,
                    count: int, writes: dict[str, int], *, with_creates: bool = False,
                    ) -> tuple[float, float]:
    """The ceiling: per object, what the design needs, with paykube's own clients and
    none of the operator around them. Returns (seconds, this process's CPU seconds).

    With `with_creates`, the timed part is the operator run's whole work but the operator:
    the objects are created while the loop works on them (the same 32 concurrent POSTs),
    and the same watch times them from the first create to the last Open."""
    target = ApiTarget.from_kubeconfig(plane.kubeconfig)
    manifests = session_list(namespace, count)
    created: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    if not with_creates:
        for obj in await create_sessions(target, namespace, manifests):
            created.put_nowait(obj)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    stamp = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    provider = StripeProvider(api_base=emulator.base_url,
                              limiter=RateLimiter(rate=1e9, burst=10**9))
    remaining = [count]
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        async def one(obj: dict[str, Any]) -> None:
            meta = obj["metadata"]
            ref = ObjectRef(meta["namespace"], meta["name"], meta["uid"])
            spec = PaymentSessionSpec.from_dict(obj["spec"])
            version = meta["resourceVersion"]
            for index in range(writes["metadata"]):
                version = (await kube.patch_metadata(ref, version, {"annotations": {
                    f"bench.paykube.dev/step-{index}": str(uuid.uuid4())}}
                ))["metadata"]["resourceVersion"]
            history = [{"phase": "Pending", "at": stamp, "source": "operator",
                        "published": True}]
            pending = {"phase": "Pending", "expiresAt": stamp, "history": history}
            version = (await kube.replace_status(ref, version, pending)
                       )["metadata"]["resourceVersion"]
            session = await provider.create_session(CreateSession(ref, spec, expires),
                                                    SecretStr(API_KEY))
            for _ in range(max(0, writes["status"] - 1)):
                opened = {"phase": "Open", "sessionId": session.snapshot.session_id,
                          "url": session.snapshot.url,
                          "history": [*history, {"phase": "Open", "at": stamp,
                                                 "source": "operator", "published": True}]}
                version = (await kube.replace_status(ref, version, opened)
                           )["metadata"]["resourceVersion"]
            for _ in range(writes["events"]):
                await kube.create_event(ref, type_="Normal", reason="Open",
                                        message="Pending -> Open", component="bench",
                                        now=dt.datetime.now(dt.UTC), aggregate=False)

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                await one(await created.get())

        try:
            timeline = Timeline()
            if with_creates:
                _, version = await kube.list_sessions_at(namespace)
                watching = asyncio.create_task(
                    watch_until_open(kube, namespace, version, count, timeline))
            cpu, started = time.process_time(), time.monotonic()
            work: list[Awaitable[Any]] = [worker() for _ in range(RECONCILE_CONCURRENCY)]
            if with_creates:
                work.append(create_sessions(target, namespace, manifests,
                                            on_created=created.put_nowait))
            await asyncio.gather(*work)
            if with_creates:
                await asyncio.wait_for(watching, 120)
                return max(timeline.opened.values()) - started, time.process_time() - cpu
            return time.monotonic() - started, time.process_time() - cpu
        finally:
            await provider.aclose()


def ceiling(plane: ControlPlane, directory: Path, count: int, measured: OperatorRun) -> None:
    per = {key: round(n / measured.count) for key, n in measured.calls.items()}
    writes = {"status": per.get(("PATCH", "paymentsessions", "status"), 2),
              "metadata": per.get(("PATCH", "paymentsessions", ""), 0),
              "events": per.get(("POST", "events", ""), 0)}
    for with_creates in (False, True):
        # A 10,000 run also measures 1,000.
        namespace = f"ceiling-{count}-{measured.count}{'-c' if with_creates else ''}"
        plane.kubectl("create", "namespace", namespace)
        with EmulatorProcess(directory / f"emulator-{namespace}.log") as emulator:
            assert emulator.proc is not None
            processes = {**plane_processes(plane), "stripe emulator": emulator.proc.pid,
                         "bench (the bare loop)": os.getpid()}
            with CpuSampler(processes) as cpu:
                seconds, own_cpu = run_like_paykube(bare_loop(plane, emulator, namespace, count,
                                                         writes, with_creates=with_creates))
        rate = count / seconds
        what = ("creates, writes and the watch, timed from the first create to the last "
                "Open, as the operator's run" if with_creates else "writes only, the objects "
                "created before")
        print(f"\n== ceiling: bare loop, {count} sessions, {RECONCILE_CONCURRENCY} at once, "
              f"{what} ==")
        print(f"per session:           1 Stripe create + {writes['metadata']} metadata PATCH + "
              f"{writes['status']} status PATCH + {writes['events']} Event "
              f"(the operator's rounded counts in this run)")
        print(f"throughput:            {rate:.1f} sessions/s ({seconds:.1f} s; loop CPU "
              f"{1000 * own_cpu / count:.1f} ms/session)")
        print(cpu.line())
        print(f"operator / ceiling:    {measured.sessions_per_second:.1f} / {rate:.1f} = "
              f"{measured.sessions_per_second / rate:.2f} (goal >= 0.7"
              f"{'; the same work' if with_creates else '; writes only'})")


def time_kubectl(plane: ControlPlane, count: int) -> None:
    namespace = f"kubectl-{count}"
    plane.kubectl("create", "namespace", namespace)
    started = time.monotonic()
    plane.kubectl("apply", "-f", "-", input=session_list(namespace, count))
    took = time.monotonic() - started
    print(f"\n== kubectl apply of {count} objects (no operator): {took:.1f} s, "
          f"{count / took:.0f}/s ==")
    plane.kubectl("delete", "namespace", namespace, "--wait=false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000])
    parser.add_argument("--poll-min-interval", type=float, default=None,
                        help="PAYKUBE_POLL_MIN_INTERVAL for the operator (default: its own)")
    parser.add_argument("--observe", type=float, default=0.0,
                        help="seconds to hold all sessions Open, counting the polls")
    parser.add_argument("--ceiling-sessions", type=int, default=1000,
                        help="sessions of the bare loop (at most N; 0: no ceiling)")
    parser.add_argument("--create-rate", type=float, default=0.0,
                        help="create the N objects at this many per second (0: at once), "
                             "to tell the memory of a burst from that of open sessions")
    parser.add_argument("--kubectl", type=int, default=1000,
                        help="time kubectl apply of this many objects once (0: skip)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: each N with the operator under cProfile, no ceiling")
    parser.add_argument("--memory-profile", action="store_true",
                        help="instead: each N with the operator under tracemalloc, a "
                             "snapshot of its live allocations once all are Open")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--rate-sessions", type=int, default=300,
                        help="sessions for the rate-limited run (300 at 25/s: about 12 s)")
    args = parser.parse_args(argv)
    with platform() as (plane, directory):
        print(f"load average at start: {load_average()}; {os.cpu_count()} cores")
        for count in args.sessions:
            if args.profile:  # where the operator's CPU goes; its figures are the profiler's
                run(plane, directory, count, None, args.poll_min_interval, 0, profile=True)
                continue
            if args.memory_profile:  # where the operator's memory goes, with all Open
                run(plane, directory, count, None, args.poll_min_interval, 0,
                    memory=True, create_rate=args.create_rate)
                continue
            measured = run(plane, directory, count, None, args.poll_min_interval,
                           args.observe, create_rate=args.create_rate)
            if args.ceiling_sessions > 0:
                ceiling(plane, directory, min(count, args.ceiling_sessions), measured)
        if args.rate > 0:
            run(plane, directory, args.rate_sessions, args.rate, args.poll_min_interval, 0)
        if args.kubectl:
            time_kubectl(plane, args.kubectl)
        print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
