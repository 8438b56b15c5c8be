"""Mirror lag: from a status change in the API server to its row in MariaDB.

    python bench/mirror_bench.py --sessions 1000

N sessions go Pending -> Open (operator) -> Paid (signed webhook). The API-side time of
each (uid, phase) is stamped by a watch as its event arrives (no polling: resolution is
the event's delivery, milliseconds); the database side is polled every DB_PERIOD for the
ledger rows recorded since the last poll, so a lag is overstated by at most DB_PERIOD.
Negative lags (the operator's own watch, and its write, beat the benchmark's watch) are
counted and reported, not hidden. Also: the mirror's ledger rows written per second, and
the MirrorWriter's own capacity with no operator in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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
DB_PERIOD = 0.05
# Rows are stamped with the writer's clock before their commit: the poll looks back this
# far so that a row committed late (a slow transaction) is not skipped.
DB_LOOKBACK = dt.timedelta(seconds=10)


class Sampler:
    """First time each (uid, phase) is seen in the API server (watch) and in the database
    (polling), on one monotonic clock."""

    def __init__(self, plane: ControlPlane, namespace: str, url: str) -> None:
        self.plane, self.namespace = plane, namespace
        self.engine = make_engine(url)
        self.in_api: dict[tuple[str, str], float] = {}
        self.in_db: dict[tuple[str, str], float] = {}
        self.watch_restarts = 0
        self.stop = threading.Event()

    def _seen_in_api(self, item: dict[str, Any], now: float) -> None:
        for entry in (item.get("status") or {}).get("history", []):
            self.in_api.setdefault((item["metadata"]["uid"], entry["phase"]), now)

    async def _api(self) -> None:
        async with KubeClient(KubeConfig.from_file(self.plane.kubeconfig), timeout=60) as kube:
            while not self.stop.is_set():
                items, version = await kube.list_sessions_at(self.namespace)
                now = time.monotonic()
                for item in items:
                    self._seen_in_api(item, now)
                try:
                    while not self.stop.is_set():
                        async for kind, obj in kube.watch_sessions(self.namespace, version,
                                                                   server_timeout=60):
                            now = time.monotonic()  # as the event arrives
                            if kind == "ERROR":
                                raise RuntimeError("watch expired")
                            version = obj["metadata"].get("resourceVersion", version)
                            if kind in ("ADDED", "MODIFIED"):
                                self._seen_in_api(obj, now)
                except Exception:  # relist; the figures say how often
                    self.watch_restarts += 1

    def _db(self) -> None:
        since = dt.datetime(1970, 1, 1)
        while not self.stop.is_set():
            now = time.monotonic()  # a row seen now was committed before this instant
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(text(
                        "SELECT uid, phase, recorded_at FROM payment_session_transitions "
                        "WHERE recorded_at >= :since"), {"since": since}).all()
            except Exception:
                time.sleep(DB_PERIOD)
                continue
            for uid, phase, recorded in rows:
                self.in_db.setdefault((uid, phase), now)
                since = max(since, recorded - DB_LOOKBACK)
            time.sleep(DB_PERIOD)

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
        if not await writer.flush(120):
            raise RuntimeError(f"the writer did not catch up in 120 s: "
                               f"{writer.pending_count()} pending, last error "
                               f"{writer.last_error}")
    elapsed = time.monotonic() - started
    await writer.aclose()
    engine.dispose()
    if writer.dropped or writer.written < 3 * sessions:
        raise RuntimeError(f"the writer wrote {writer.written} and dropped {writer.dropped} "
                           f"of {3 * sessions} observations")
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
    print(f"resolution:          API side: watch event arrival; database side: polled every "
          f"{DB_PERIOD} s (lags overstated by 0..{DB_PERIOD} s); watch restarts: "
          f"{sampler.watch_restarts}")
    for phase, values in lags.items():
        negative = [v for v in values if v < 0]
        print(f"lag {phase:8s} p50/p99: {percentile(values, 0.5):.3f} s / "
              f"{percentile(values, 0.99):.3f} s  max {max(values, default=float('nan')):.3f} s"
              f"  (n={len(values)}; negative: {len(negative)}"
              + (f", min {min(negative):.3f} s" if negative else "") + ")")
    missing_api = sum(1 for k in sampler.in_db if k not in sampler.in_api)
    if missing_api:
        print(f"rows without an API-side stamp: {missing_api}")
    span = seen[-1] - seen[0] if len(seen) > 1 else float("nan")
    print(f"ledger rows/s:       {len(seen) / span:.0f} (first to last row seen; bounded by "
          "how fast the sessions move)")
    print(f"writer capacity:     {rows / seconds:.0f} ledger rows/s ({rows} rows, 5000 sessions "
          f"x 3 phases, {seconds:.1f} s, no operator)")
    print(f"operator CPU:        {stats.cpu_seconds:.1f} s, peak RSS {stats.peak_rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
