"""Mirror lag: from a status change in the API server to its row in MariaDB.

    python bench/mirror_bench.py --sessions 1000

N sessions go Pending -> Open (operator) -> Paid (signed webhook) while a watcher samples
the API server and the database every 0.2 s. Reports p50/p99 lag per transition (the
sampling period bounds the resolution) and the mirror's ledger rows written per second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import Any

from sqlalchemy import text

from bench.common import percentile, platform, process_stats
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube_dev.kube import ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_operator, start_webhook
from paykube_dev.services import start_mariadb
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

SECRET = "whsec_bench_mirror"
PERIOD = 0.2


class Sampler:
    """First time each (uid, phase) is seen in the API server and in the database."""

    def __init__(self, plane: ControlPlane, namespace: str, url: str) -> None:
        self.plane, self.namespace = plane, namespace
        self.engine = make_engine(url)
        self.in_api: dict[tuple[str, str], float] = {}
        self.in_db: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()

    async def _api(self) -> None:
        async with KubeClient(KubeConfig.from_file(self.plane.kubeconfig), timeout=60) as kube:
            while not self.stop.is_set():
                now = time.monotonic()
                for item in await kube.list_sessions(self.namespace):
                    for entry in item.get("status", {}).get("history", []):
                        self.in_api.setdefault((item["metadata"]["uid"], entry["phase"]), now)
                await asyncio.sleep(PERIOD)

    def _db(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(text(
                        "SELECT uid, phase FROM payment_session_transitions")).all()
            except Exception:
                time.sleep(PERIOD)
                continue
            for uid, phase in rows:
                self.in_db.setdefault((uid, phase), now)
            time.sleep(PERIOD)

    def start(self) -> None:
        threading.Thread(target=lambda: asyncio.run(self._api()), daemon=True).start()
        threading.Thread(target=self._db, daemon=True).start()


def synthetic(uid: str, rv: int, phases: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": f"s-{uid[:8]}", "namespace": "bench",
                     "resourceVersion": str(rv), "creationTimestamp": "2026-11-26T10:00:00Z",
                     "generation": 1},
        "spec": {"amount": 1000, "currency": "usd"},
        "status": {"phase": phases[-1], "sessionId": f"cs_{uid[:8]}",
                   "history": [{"phase": p, "at": "2026-11-26T10:00:00Z", "source": "operator"}
                               for p in phases]},
    }


async def writer_capacity(url: str, sessions: int) -> tuple[int, float]:
    """Rows the MirrorWriter itself writes per second (no operator in the way)."""
    engine = make_engine(url)
    writer = MirrorWriter(MirrorStore(engine))
    writer.start()
    started = time.monotonic()
    rv = 0
    for phases in (["Pending"], ["Pending", "Open"], ["Pending", "Open", "Paid"]):
        for i in range(sessions):
            rv += 1
            await writer.record(synthetic(f"{i:08d}-capacity", rv, phases))
        await writer.flush(120)
    elapsed = time.monotonic() - started
    await writer.aclose()
    return 3 * sessions, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args(argv)
    count = args.sessions
    with platform() as (plane, directory), start_mariadb(directory / "db") as db, \
            EmulatorProcess(directory / "emulator.log") as emulator:
        namespace = "bench-mirror"
        plane.kubectl("create", "namespace", namespace)
        env = {"PAYKUBE_STRIPE_API_BASE": emulator.base_url, "PAYKUBE_STRIPE_API_KEY":
               "sk_test_bench", "PAYKUBE_WEBHOOK_SECRETS": SECRET,
               "PAYKUBE_DATABASE_URL": db.url, "PAYKUBE_LOG_LEVEL": "WARNING",
               "PAYKUBE_STRIPE_RATE_LIMIT": "10000", "PAYKUBE_POLL_MIN_INTERVAL": "120",
               "PAYKUBE_NAMESPACES": namespace}
        webhook = start_webhook(plane.kubeconfig, directory / "webhook.log", env)
        operator = start_operator(plane.kubeconfig, directory / "operator.log", env)
        control = EmulatorControl(emulator.base_url)
        control.add_webhook_endpoint(f"{webhook.url}/webhooks/stripe", SECRET)
        sampler = Sampler(plane, namespace, db.url)
        sampler.start()
        try:
            started = time.monotonic()
            plane.kubectl("apply", "-f", "-", input=session_list(namespace, count))
            deadline = time.monotonic() + 900
            while sum(1 for k in sampler.in_api if k[1] == "Open") < count:
                assert time.monotonic() < deadline, "sessions did not all open"
                time.sleep(0.5)
            for session in control.sessions():
                control.pay(session["id"], wait=False)
            total = 3 * count
            while len(sampler.in_db) < total and time.monotonic() < deadline:
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            stats = process_stats(operator.proc.pid)
        finally:
            sampler.stop.set()
            operator.stop()
            webhook.stop()
        rows, seconds = asyncio.run(writer_capacity(db.url, 5000))
    lags = {phase: sorted(sampler.in_db[k] - sampler.in_api[k] for k in sampler.in_db
                          if k[1] == phase and k in sampler.in_api)
            for phase in ("Pending", "Open", "Paid")}
    seen = sorted(sampler.in_db.values())
    print(f"\n== mirror, {count} sessions, {len(sampler.in_db)}/{total} ledger rows "
          f"in {elapsed:.1f} s ==")
    for phase, values in lags.items():
        print(f"lag {phase:8s} p50/p99: {percentile(values, 0.5):.2f} s / "
              f"{percentile(values, 0.99):.2f} s  (n={len(values)}, sampling {PERIOD} s)")
    span = seen[-1] - seen[0] if len(seen) > 1 else float("nan")
    print(f"ledger rows/s:       {len(seen) / span:.0f} (first to last row seen; bounded by "
          "how fast the sessions move)")
    print(f"writer capacity:     {rows / seconds:.0f} ledger rows/s ({rows} rows, 5000 sessions "
          f"x 3 phases, {seconds:.1f} s, no operator)")
    print(f"operator CPU:        {stats.cpu_seconds:.1f} s, peak RSS {stats.peak_rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
