"""Webhook throughput next to the limits measured in the same run.

    python bench/webhook_bench.py --duration 20 --concurrency 16

(a) valid `checkout.session.completed` events from --concurrency connections of wrk (each
    signed event once, in turn), each moving one Open PaymentSession to Paid through the real API
    server and publishing to the real ActiveMQ: events/s, p50/p99/p999, and API calls per
    event as the API server counts them (`apiserver_request_total`). There are duration x
    --expected-rate objects, half for (a) and half for (a'); the report says if they ran
    out early (raise --expected-rate).
(a') the same against a second webhook with PAYKUBE_WEBHOOK_SESSION_CACHE=true (a watch's
    copy of each object is the write's base: no GET before the write).
    Its ceiling: the API server's own status merge-PATCH with the resourceVersion
    precondition (the webhook's one write), --concurrency clients, as writes/s and p99, once
    with httpx (KubeClient's client before issue 11) and once with aiohttp (its client now);
    their client CPU per 1000 calls is the client comparison (issue 11 item 5).
(b) rejections: `wrk -t1 -c32` (compiled, Debian's `wrk`) posting a 2 KB event with a bad
    Stripe-Signature; its ceiling is a bare aiohttp handler (bench/bare_aiohttp.py: read the
    body, answer 400) under the same wrk command, on the standard event loop and on uvloop
    (the webhook's loop: the like-for-like ceiling). Then the same load split over two webhook
    processes on two ports (two wrk processes, 16 connections each): how far a second
    process, as a second replica would, takes the rate on this machine.
(c) with --slow-clients N: N anonymous uploads that announce a 1 MiB body, send part of it
    and stall, against the webhook as configured (a body read deadline and a bounded number
    of readers) and against the first release's behaviour (no deadline, no bound; the same
    code with both set out of reach). Reports the webhook's peak RSS, how many uploads the
    server closed and when, and whether a valid request still got through meanwhile.
Every phase samples the CPU of each involved process once a second (webhook, kube-apiserver,
etcd, broker, the load generator) and prints the averages; the load average is printed at
the start and the end, so that a run on a busy machine can be recognised.
The load process is `python bench/webhook_bench.py --load ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.apiload import ApiTarget, PatchRun, create_sessions, patch_ceiling
from bench.common import (
    CpuSampler,
    load_average,
    percentile,
    plane_processes,
    platform,
    process_stats,
    run_like_paykube,
)
from bench.profiled import summary
from bench.wrkload import WrkResult, run_wrk, write_events_script, write_script, wrk_binary
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.apicalls import per_object_calls, request_counts
from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.proc import free_port, port_open, start_process, stop_process, wait_until
from paykube_dev.programs import Program, start_webhook
from paykube_dev.services import start_activemq
from paykube_dev.stripe_emulator import sign_payload

SECRET = "whsec_bench"
METRICS_AUTH = ("bench", "bench-metrics-password")


def signed_event(namespace: str, obj: dict[str, Any], secret: str) -> dict[str, str]:
    meta = obj["metadata"]
    body = json.dumps({
        "id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": obj["status"]["sessionId"], "object": "checkout.session",
            "status": "complete", "payment_status": "paid",
            "amount_total": obj["spec"]["amount"], "currency": obj["spec"]["currency"],
            "payment_intent": f"pi_{uuid.uuid4().hex[:24]}",
            "metadata": {"paykube_namespace": namespace, "paykube_name": meta["name"],
                         "paykube_uid": meta["uid"]}}}})
    t = int(time.time())
    return {"body": body, "signature": sign_payload(body.encode(), secret, t)}


async def open_sessions(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Mark every object Open with a session id, as the operator would (no operator here)."""
    from paykube.kube.status import ref_of

    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        items = await kube.list_sessions(namespace)
        sem = asyncio.Semaphore(16)

        async def mark(obj: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                status = {"phase": "Open", "sessionId": f"cs_test_{uuid.uuid4().hex}",
                          "history": [{"phase": "Open", "at": "2026-01-01T00:00:00Z",
                                       "source": "operator", "published": True}]}
                return await kube.replace_status(ref_of(obj),
                                                 obj["metadata"]["resourceVersion"], status)

        return list(await asyncio.gather(*(mark(o) for o in items)))


def expected(status: int, expect: str) -> bool:
    """`expect` is "2xx" or one exact status (the rejection path's 400)."""
    return 200 <= status < 300 if expect == "2xx" else str(status) == expect


async def load(url: str, events: list[dict[str, str]], concurrency: int,
               duration: float, expect: str) -> dict[str, Any]:
    """Send until the deadline (or until the events run out, which the result says).
    Latencies are of the expected answers only; every other answer is an error."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    transport_errors = 0
    queue = iter(events)
    ran_out_at: float | None = None
    deadline = time.monotonic() + duration

    async with httpx.AsyncClient(timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal transport_errors, ran_out_at
            while time.monotonic() < deadline:
                event = next(queue, None)
                if event is None:
                    ran_out_at = ran_out_at or time.monotonic()
                    return
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=event["body"], headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": event["signature"]})
                except httpx.HTTPError:
                    transport_errors += 1
                    continue
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                if expected(response.status_code, expect):
                    latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"count": len(latencies), "elapsed": elapsed, "latencies": sorted(latencies),
            "statuses": statuses, "transport_errors": transport_errors,
            "unexpected": sum(n for code, n in statuses.items()
                              if not expected(int(code), expect)),
            "expect": expect,
            "ran_out_after": None if ran_out_at is None else ran_out_at - started}


def rss_mib(pid: int) -> float:
    """Resident memory now (VmRSS), not the peak since the process started (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples the webhook's RSS while one phase runs, so each phase gets its own figure."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(rss_mib(self.pid))

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mib(self.pid))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mib(self.pid))


def run_load(url: str, events: list[dict[str, str]], concurrency: int, duration: float,
             directory: Path, label: str, expect: str, cpu: CpuSampler) -> dict[str, Any]:
    path = directory / f"events-{label}.json"
    path.write_text(json.dumps(events))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--load", url, str(path), str(concurrency), str(duration),
         expect], stdout=subprocess.PIPE, text=True)
    cpu.add("load generator (Python)", proc.pid)
    out, _ = proc.communicate(timeout=duration + 300)
    if proc.returncode:
        raise RuntimeError(f"load process exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


def outcomes(url: str, counter: str) -> dict[str, int]:
    """`paykube_webhook_<counter>_total` by outcome, from the webhook's /metrics."""
    response = httpx.get(url, auth=METRICS_AUTH, timeout=10)
    response.raise_for_status()
    return {s.labels["outcome"]: int(s.value)
            for family in text_string_to_metric_families(response.text)
            for s in family.samples if s.name == f"paykube_webhook_{counter}_total"}


async def count_phases(plane: ControlPlane, namespace: str,
                       names: set[str] | None = None) -> dict[str, int]:
    async with KubeClient(KubeConfig.from_file(plane.kubeconfig), timeout=60) as kube:
        items = await kube.list_sessions(namespace)
    phases: dict[str, int] = {}
    for obj in items:
        if names is not None and obj["metadata"]["name"] not in names:
            continue
        phase = obj.get("status", {}).get("phase", "none")
        phases[phase] = phases.get(phase, 0) + 1
    return phases


def stall(host: str, port: int, count: int, sent: int) -> list[socket.socket]:
    """`count` connections that each announce a 1 MiB body, send `sent` bytes of it and
    stop: the slow (or hostile) senders no signature is needed for."""
    head = (f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n").encode()
    conns = []
    for _ in range(count):
        conn = socket.create_connection((host, port), timeout=5)
        conn.sendall(head + b" " * sent)
        conns.append(conn)
    return conns


def closed_by_server(conns: list[socket.socket]) -> int:
    closed = 0
    for conn in conns:
        conn.setblocking(False)
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            closed += 1
            continue
        closed += 1 if data == b"" or data.startswith(b"HTTP/1.1 4") else 0
    return closed


def slow_clients(plane: ControlPlane, directory: Path, count: int, hold: float) -> None:
    """(c): peak RSS and closed uploads, bounded (as configured) vs the first release."""
    configs = {"first release (no deadline, no bound)": {
                   "PAYKUBE_WEBHOOK_READ_TIMEOUT": "3600",
                   "PAYKUBE_WEBHOOK_MAX_READERS": "1000000"},
               "bounded (defaults: 10 s deadline, 16 readers)": {}}
    for label, extra in configs.items():
        env = {"PAYKUBE_WEBHOOK_SECRETS": SECRET, "PAYKUBE_LOG_LEVEL": "WARNING", **extra}
        webhook = start_webhook(plane.kubeconfig, directory / f"slow-{len(extra)}.log", env)
        host, port = webhook.url.removeprefix("http://").rsplit(":", 1)
        try:
            with RssSampler(webhook.proc.pid, interval=0.5) as rss:
                conns = stall(host, int(port), count, 1024 * 1024 - 1)
                started = time.monotonic()
                served = httpx.post(f"{webhook.url}/webhooks/stripe", content=b"{}",
                                    headers={"Content-Type": "application/json"},
                                    timeout=30).status_code
                waited, closed = 0.0, 0
                while time.monotonic() - started < hold:
                    time.sleep(1.0)
                    closed = closed_by_server(conns)
                    waited = time.monotonic() - started
                    if closed == count:
                        break
                for conn in conns:
                    conn.close()
            print(f"(c) {count} stalled 1 MiB uploads, {label}:")
            print(f"    RSS {rss.samples[0]:.0f} MiB at rest -> peak {max(rss.samples):.0f} MiB; "
                  f"closed by the server: {closed}/{count} after {waited:.0f} s "
                  f"(held up to {hold:g} s); an anonymous request meanwhile: HTTP {served}")
        finally:
            webhook.stop()


def rejection_body(namespace: str, obj: dict[str, Any]) -> tuple[str, str]:
    """A signed-looking event of about 2 KB and a signature by the wrong secret, with a
    fresh timestamp (an old one could be refused before the HMAC, which is cheaper)."""
    event = json.loads(signed_event(namespace, obj, SECRET)["body"])
    event["data"]["object"]["metadata"]["padding"] = ""
    size = len(json.dumps(event))
    event["data"]["object"]["metadata"]["padding"] = "x" * max(0, 2048 - size)
    body = json.dumps(event)
    return body, sign_payload(body.encode(), "whsec_wrong", int(time.time()))


def probe(url: str, body: str, signature: str) -> int:
    return httpx.post(url, content=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": signature}).status_code


def start_bare(directory: Path, index: int, *loop: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start_process([sys.executable, str(Path(__file__).with_name("bare_aiohttp.py")),
                          str(port), *loop], log=directory / f"bare-{index}.log")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: port_open(port), timeout=30, what="bare aiohttp", proc=proc,
               log=directory / f"bare-{index}.log")
    return proc, url


def rejections(plane: ControlPlane, directory: Path, webhook: Program, namespace: str,
               obj: dict[str, Any], env: dict[str, str], duration: float,
               connections: int, base: dict[str, int]) -> tuple[WrkResult, WrkResult]:
    """(b): the webhook's rejections under wrk, the bare aiohttp ceiling under the same
    command, then two webhook processes with half the connections each."""
    body, signature = rejection_body(namespace, obj)
    script = write_script(directory / "reject.lua", body, {
        "Content-Type": "application/json", "Stripe-Signature": signature})
    path = "/webhooks/stripe"
    answered = probe(webhook.url + path, body, signature)
    print(f"\n== (b) rejections: wrk -t1 -c{connections} -d{duration:g}s, "
          f"{len(body)} B body, bad Stripe-Signature (a probe got HTTP {answered}) ==")
    with CpuSampler({"webhook": webhook.proc.pid, **base}) as cpu:
        paykube = run_wrk([webhook.url + path], script, connections=connections,
                          duration=duration, cpu=cpu)
    print(f"paykube webhook:   {paykube.line()}")
    print(f"                   {cpu.line()}")
    print(f"webhook CPU:       {1e6 * cpu.seconds('webhook') / paykube.requests:.0f} µs "
          f"per rejection")
    bares: dict[str, WrkResult] = {}
    for index, loop in enumerate(("", "uvloop"), start=1):
        label = f"bare aiohttp{' on uvloop' if loop else ''}"
        bare_proc, bare_url = start_bare(directory, index, *([loop] if loop else []))
        try:
            answered = probe(bare_url + path, body, signature)
            with CpuSampler({label: bare_proc.pid, **base}) as cpu:
                bare = bares[label] = run_wrk([bare_url + path], script,
                                              connections=connections, duration=duration,
                                              cpu=cpu)
        finally:
            stop_process(bare_proc)
        print(f"{label + ':':<19}{bare.line()} (probe: HTTP {answered})")
        print(f"                   {cpu.line()}")
        print(f"bare CPU:          {1e6 * cpu.seconds(label) / bare.requests:.0f} µs "
              f"per answer")
    for label, bare in bares.items():
        print(f"paykube / {label}: {paykube.rate:,.0f} / {bare.rate:,.0f} = "
              f"{paykube.rate / bare.rate:.2f} (goal >= 0.8"
              f"{'; like for like: the webhook runs on uvloop' if 'uvloop' in label else ''})")

    second = start_webhook(plane.kubeconfig, directory / "webhook-2.log", env)
    try:
        probe(second.url + path, body, signature)
        with CpuSampler({"webhook#1": webhook.proc.pid, "webhook#2": second.proc.pid,
                         **base}) as cpu:
            both = run_wrk([webhook.url + path, second.url + path], script,
                           connections=max(1, connections // 2), duration=duration, cpu=cpu)
    finally:
        second.stop()
    print(f"two webhook processes (two ports, one wrk -t1 -c{max(1, connections // 2)} "
          f"each): {both.line()}")
    print(f"                   {cpu.line()}")
    print(f"scaling:           2 processes / 1 = {both.rate / paykube.rate:.2f} on "
          f"{os.cpu_count()} cores shared with the load generators")
    return paykube, bares["bare aiohttp on uvloop"]


def patch_ceilings(plane: ControlPlane, clients: int, duration: float,
                   base: dict[str, int]) -> Ceilings:
    """The API server's own status-PATCH rate: httpx, then aiohttp, the same loop."""
    namespace = "bench-ceiling"
    plane.kubectl("create", "namespace", namespace)
    target = ApiTarget.from_kubeconfig(plane.kubeconfig)
    objects = asyncio.run(create_sessions(target, namespace,
                                          session_list(namespace, clients * 8, "ceiling")))
    runs = []
    print(f"\n== ceiling: status merge-PATCH with resourceVersion, {clients} clients, "
          f"{duration:g} s each ==")
    for kind in ("httpx", "aiohttp"):
        with CpuSampler({**base, "bench (client)": os.getpid()}) as cpu:
            run = run_like_paykube(patch_ceiling(target, objects, kind=kind,
                                                 clients=clients, duration=duration))
        runs.append(run)
        lat = run.latencies
        print(f"{kind:<8} {run.rate:.0f} writes/s ({run.writes} in {run.elapsed:.1f} s, "
              f"{run.failures} failed), p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(lat, 0.99) * 1000:.1f} ms; client CPU "
              f"{run.cpu_per_1000:.2f} s per 1000 calls")
        print(f"         {cpu.line()}")
    httpx_run, aiohttp_run = runs
    print(f"client CPU per call, aiohttp / httpx: "
          f"{aiohttp_run.cpu_per_1000 / httpx_run.cpu_per_1000:.2f}")
    with CpuSampler({**base, "bench (client)": os.getpid()}) as cpu:
        design = run_like_paykube(patch_ceiling(target, objects, kind="aiohttp",
                                                clients=clients, duration=duration,
                                                as_webhook=True))
    lat = design.latencies
    print(f"as the webhook wrote an event before the PSP's redelivery became its outbox "
          f"(status PATCH + Event POST + mark PATCH, aiohttp): "
          f"{design.rate:.0f} events/s ({design.writes} in {design.elapsed:.1f} s, "
          f"{design.failures} failed), p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99 "
          f"{percentile(lat, 0.99) * 1000:.1f} ms\n         {cpu.line()}")
    return Ceilings(max(runs, key=lambda r: r.rate), design)


@dataclass(frozen=True)
class Ceilings:
    patch: PatchRun
    """The API server's single status PATCH (the issue's ceiling)."""
    design: PatchRun
    """The three calls an applied event cost before (status, Event, outbox mark), without
    the webhook: how far the change of design moved the limit."""


def start_profiled_webhook(plane: ControlPlane, directory: Path, env: dict[str, str],
                           name: str) -> tuple[Program, Path]:
    """The webhook as start_webhook runs it, but under cProfile (bench/profiled.py); the
    profile is written when it stops."""
    out, log, port = directory / f"{name}.prof", directory / f"{name}.log", free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYKUBE_")}
    full["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "operator"), str(REPO / "webhook"), full.get("PYTHONPATH", "")])
    full.update({"KUBECONFIG": str(plane.kubeconfig), **env,
                 "PAYKUBE_WEBHOOK_PORT": str(port), "PAYKUBE_WEBHOOK_HOST": "127.0.0.1"})
    proc = start_process([sys.executable, str(Path(__file__).with_name("profiled.py")),
                          str(out), "paykube_webhook"], log=log, env=full)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, what="profiled webhook", proc=proc, log=log, interval=0.2)
    return Program("webhook", proc, log, port), out


def profile_phases(plane: ControlPlane, directory: Path, env: dict[str, str],
                   namespace: str, objects: list[dict[str, Any]],
                   args: argparse.Namespace) -> None:
    """--profile: (a) and (b) each against a webhook under cProfile; where its CPU goes.
    With --profile-out, the profiles are kept there (to read with pstats)."""
    if not args.rejections_only:
        profile_valid(plane, directory, env, namespace, objects, args)
    webhook, out = start_profiled_webhook(plane, directory, env, "profile-reject")
    try:
        body, signature = rejection_body(namespace, objects[0])
        script = write_script(directory / "reject.lua", body, {
            "Content-Type": "application/json", "Stripe-Signature": signature})
        rejected = run_wrk([f"{webhook.url}/webhooks/stripe"], script,
                           connections=args.connections, duration=args.duration)
    finally:
        webhook.stop()
    print(f"\n== profile of (b), rejections: {rejected.requests} answered ==")
    print("\n".join(summary(out)))
    if args.profile_out:
        shutil.copy(out, Path(args.profile_out) / out.name)


def profile_valid(plane: ControlPlane, directory: Path, env: dict[str, str],
                  namespace: str, objects: list[dict[str, Any]],
                  args: argparse.Namespace) -> None:
    webhook, out = start_profiled_webhook(plane, directory, env, "profile-valid")
    try:
        with CpuSampler({"webhook (profiled)": webhook.proc.pid}) as cpu:
            result = run_load(f"{webhook.url}/webhooks/stripe",
                              [signed_event(namespace, o, SECRET) for o in objects],
                              args.concurrency, args.duration, directory, "profile", "2xx",
                              cpu)
    finally:
        webhook.stop()
    print(f"\n== profile of (a), valid events: {result['count']} answered ==")
    print("\n".join(summary(out)))
    if args.profile_out:
        shutil.copy(out, Path(args.profile_out) / out.name)


@dataclass(frozen=True)
class Valid:
    """(a) against one webhook: wrk's figures and how many events there were."""
    wrk: WrkResult
    events: int

    @property
    def ran_out(self) -> bool:
        return self.wrk.requests > self.events


def valid_phase(plane: ControlPlane, webhook: Program, namespace: str,
                objects: list[dict[str, Any]], others: dict[str, int],
                args: argparse.Namespace, directory: Path, title: str) -> Valid:
    """(a) against one webhook, driven by wrk (each object's event once, --concurrency
    connections): its answers, API calls per event, every process's CPU, the objects'
    phases, the publishes and the Kubernetes Events."""
    pid = webhook.proc.pid
    url = f"{webhook.url}/webhooks/stripe"
    events = [signed_event(namespace, o, SECRET) for o in objects]
    script = write_events_script(
        directory / f"valid-{pid}.lua", [(e["body"], e["signature"]) for e in events],
        "Stripe-Signature", {"Content-Type": "application/json"})
    counted = request_counts(plane)
    cpu_before = process_stats(pid).cpu_seconds
    with RssSampler(pid) as rss, CpuSampler({"webhook": pid, **others}) as cpu:
        result = run_wrk([url], script, connections=args.concurrency,
                         duration=args.duration, cpu=cpu)
        time.sleep(2.0)  # the Events written after the answers
    valid = Valid(result, len(events))
    cpu_seconds = process_stats(pid).cpu_seconds - cpu_before
    print(f"\n== {title} ==")
    print(f"wrk -t1 -c{args.concurrency}: {result.line()}")
    if valid.ran_out:
        print(f"DURATION NOT HELD: {result.requests} requests for {len(events)} events, the "
              f"rest were duplicates (raise --expected-rate)")
    per_answer = 1000 * cpu_seconds / max(1, result.requests)
    print(f"webhook CPU:       {cpu_seconds:.1f} s ({per_answer:.1f} ms per answer); "
          f"RSS {rss.samples[0]:.0f} MiB before, "
          f"{max(rss.samples):.0f} MiB max during")
    calls = per_object_calls(counted, request_counts(plane), created_by_client=0)
    answered = max(1, result.requests - result.non_2xx_3xx)
    detail = ", ".join(f"{v} {r}{'/' + s if s else ''} {n / answered:.2f}"
                       for (v, r, s), n in sorted(calls.items()))
    print(f"API calls/event:   {sum(calls.values()) / answered:.2f} "
          f"(apiserver_request_total: {detail})")
    print(cpu.line())
    names = {o["metadata"]["name"] for o in objects}
    phases = asyncio.run(count_phases(plane, namespace, names))
    print(f"objects by phase:  {phases} (answers: {result.requests}, "
          f"{result.non_2xx_3xx} not 2xx)")
    print(f"publishes:         {outcomes(f'{webhook.url}/metrics', 'publishes')}")
    print(f"Kubernetes Events: {outcomes(f'{webhook.url}/metrics', 'kube_events')} "
          f"(PAYKUBE_WEBHOOK_EVENT_RATE)")
    return valid


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--load":
        url, path, concurrency, duration, expect = argv[1:6]
        result = asyncio.run(load(url, json.loads(Path(path).read_text()), int(concurrency),
                                  float(duration), expect))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk's connections for the rejections")
    parser.add_argument("--expected-rate", type=float, default=400.0,
                        help="events/s that (a) is expected to reach; sizes its object list")
    parser.add_argument("--profile", action="store_true",
                        help="only profile the webhook under (a) and (b) (cProfile)")
    parser.add_argument("--slow-clients", type=int, default=0,
                        help="run only (c) with this many stalled uploads")
    parser.add_argument("--hold", type=float, default=60.0,
                        help="(c): seconds to wait for the server to close them")
    parser.add_argument("--profile-out", default="",
                        help="with --profile: keep the profiles in this directory")
    parser.add_argument("--rejections-only", action="store_true",
                        help="only (b): rejections next to bare aiohttp, one and two processes")
    args = parser.parse_args(argv)
    if args.rejections_only:
        args.expected_rate = 1.0 / args.duration  # one object is enough
    if args.slow_clients:
        with platform() as (plane, directory):
            slow_clients(plane, directory, args.slow_clients, args.hold)
        return 0
    wrk_binary()  # before minutes of set-up
    objects_wanted = math.ceil(args.duration * args.expected_rate)
    print(f"load average at start: {load_average()}; {os.cpu_count()} cores")
    with platform() as (plane, directory), start_activemq(directory / "activemq") as broker:
        namespace = "bench-webhook"
        plane.kubectl("create", "namespace", namespace)
        asyncio.run(create_sessions(ApiTarget.from_kubeconfig(plane.kubeconfig), namespace,
                                    session_list(namespace, objects_wanted)))
        objects = asyncio.run(open_sessions(plane, namespace))
        env = {"PAYKUBE_WEBHOOK_SECRETS": SECRET, "PAYKUBE_LOG_LEVEL": "WARNING",
               "PAYKUBE_BROKER_URLS": f"127.0.0.1:{broker.stomp_port}",
               "PAYKUBE_METRICS_USERNAME": METRICS_AUTH[0],
               "PAYKUBE_METRICS_PASSWORD": METRICS_AUTH[1]}
        if args.profile:
            profile_phases(plane, directory, env, namespace, objects, args)
            return 0
        webhook = start_webhook(plane.kubeconfig, directory / "webhook.log", env)
        base = plane_processes(plane)
        broker_pid = {"broker": broker.pid} if broker.pid else {}
        half = len(objects) // 2
        print(f"{len(objects)} Open objects for (a), half for each webhook configuration: "
              f"{args.duration:g} s x {args.expected_rate / 2:g}/s expected; "
              f"concurrency {args.concurrency}")
        try:
            if args.rejections_only:
                rejections(plane, directory, webhook, namespace, objects[0], env,
                           args.duration, args.connections, base)
                return 0
            httpx.post(f"{webhook.url}/webhooks/stripe", content=b"{}",
                       headers={"Content-Type": "application/json"})
            results = {"default (GET before the write)": valid_phase(
                plane, webhook, namespace, objects[:half], {**base, **broker_pid}, args,
                directory, "(a) valid events changing status (API server + broker)")}
            cached = start_webhook(plane.kubeconfig, directory / "webhook-cache.log",
                                   {**env, "PAYKUBE_WEBHOOK_SESSION_CACHE": "true"})
            try:
                results["PAYKUBE_WEBHOOK_SESSION_CACHE=true (no GET)"] = valid_phase(
                    plane, cached, namespace, objects[half:], {**base, **broker_pid}, args,
                    directory, "(a') valid events, webhook with PAYKUBE_WEBHOOK_SESSION_CACHE")
            finally:
                cached.stop()

            ceilings = patch_ceilings(plane, args.concurrency, args.duration, base)
            ceiling, design = ceilings.patch, ceilings.design
            for label, valid in results.items():
                valid_rate, p99 = valid.wrk.rate, valid.wrk.p99_ms
                print(f"valid events / PATCH ceiling ({ceiling.kind}), {label}: "
                      f"{valid_rate:.0f} / {ceiling.rate:.0f} = {valid_rate / ceiling.rate:.2f}"
                      f" (goal >= 0.7), p99 {p99:.0f} ms (goal <= 100 ms); / the earlier "
                      f"three calls: {valid_rate:.0f} / {design.rate:.0f} = "
                      f"{valid_rate / design.rate:.2f}")

            rejections(plane, directory, webhook, namespace, objects[0], env,
                       args.duration, args.connections, base)
        finally:
            webhook.stop()
        print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
