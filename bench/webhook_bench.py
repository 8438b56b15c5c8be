"""Webhook throughput: signed Stripe events from a separate load process on loopback.

    python bench/webhook_bench.py --duration 20 --concurrency 16

(a) valid `checkout.session.completed` events, each moving one Open PaymentSession to Paid
    through the real API server and publishing to the real ActiveMQ;
(b) events with invalid signatures (the cheap rejection path).
Reports events/s, p50/p99/p999 latency to the answer, errors, and the webhook's CPU
seconds and peak RSS. The load process is `python bench/webhook_bench.py --load ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, platform, process_stats
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_webhook
from paykube_dev.services import start_activemq
from paykube_webhook.verify import compute_signature

SECRET = "whsec_bench"


def signed_event(namespace: str, obj: dict[str, Any], secret: str) -> dict[str, str]:
    meta = obj["metadata"]
    body = json.dumps({
        "id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": obj["status"]["sessionId"], "object": "checkout.session",
            "status": "complete", "payment_status": "paid", "amount_total": 1000,
            "currency": "usd", "payment_intent": f"pi_{uuid.uuid4().hex[:24]}",
            "metadata": {"paykube_namespace": namespace, "paykube_name": meta["name"],
                         "paykube_uid": meta["uid"]}}}})
    t = int(time.time())
    return {"body": body, "signature": f"t={t},v1={compute_signature(body.encode(), secret, t)}"}


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


async def load(url: str, events: list[dict[str, str]], concurrency: int,
               duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    queue = iter(events)
    deadline = time.monotonic() + duration

    async with httpx.AsyncClient(timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                event = next(queue, None)
                if event is None:
                    return
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=event["body"], headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": event["signature"]})
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"count": len(latencies), "elapsed": elapsed, "latencies": sorted(latencies),
            "statuses": statuses, "errors": errors}


def run_load(url: str, events: list[dict[str, str]], concurrency: int, duration: float,
             directory: Path, label: str) -> dict[str, Any]:
    path = directory / f"events-{label}.json"
    path.write_text(json.dumps(events))
    out = subprocess.run(
        [sys.executable, __file__, "--load", url, str(path), str(concurrency), str(duration)],
        capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def report(label: str, result: dict[str, Any], pid: int, cpu_before: float) -> None:
    stats = process_stats(pid)
    lat = result["latencies"]
    print(f"\n== {label} ==")
    print(f"events/s:          {result['count'] / result['elapsed']:.0f} "
          f"({result['count']} in {result['elapsed']:.1f} s)")
    print(f"latency p50/p99/p999: {percentile(lat, 0.5) * 1000:.1f} / "
          f"{percentile(lat, 0.99) * 1000:.1f} / {percentile(lat, 0.999) * 1000:.1f} ms")
    print(f"answers:           {result['statuses']}, transport errors {result['errors']}")
    print(f"webhook CPU:       {stats.cpu_seconds - cpu_before:.1f} s, "
          f"peak RSS {stats.peak_rss_mib:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--load":
        url, path, concurrency, duration = argv[1:5]
        result = asyncio.run(load(url, json.loads(Path(path).read_text()), int(concurrency),
                                  float(duration)))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--objects", type=int, default=3000)
    args = parser.parse_args(argv)
    with platform() as (plane, directory), start_activemq(directory / "activemq") as broker:
        namespace = "bench-webhook"
        plane.kubectl("create", "namespace", namespace)
        plane.kubectl("apply", "-f", "-", input=session_list(namespace, args.objects))
        objects = asyncio.run(open_sessions(plane, namespace))
        env = {"PAYKUBE_WEBHOOK_SECRETS": SECRET, "PAYKUBE_LOG_LEVEL": "WARNING",
               "PAYKUBE_BROKER_URLS": f"127.0.0.1:{broker.stomp_port}"}
        webhook = start_webhook(plane.kubeconfig, directory / "webhook.log", env)
        url = f"{webhook.url}/webhooks/stripe"
        try:
            httpx.post(url, content=b"{}", headers={"Content-Type": "application/json"})
            valid = [signed_event(namespace, o, SECRET) for o in objects]
            cpu = process_stats(webhook.proc.pid).cpu_seconds
            result = run_load(url, valid, args.concurrency, args.duration, directory, "valid")
            report("(a) valid events changing status (API server + broker)", result,
                   webhook.proc.pid, cpu)
            invalid = [signed_event(namespace, objects[0], "whsec_wrong")] * 200_000
            cpu = process_stats(webhook.proc.pid).cpu_seconds
            result = run_load(url, invalid, args.concurrency, args.duration, directory,
                              "invalid")
            report("(b) invalid signatures", result, webhook.proc.pid, cpu)
        finally:
            webhook.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
