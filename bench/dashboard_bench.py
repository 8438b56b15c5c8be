"""The dashboard on a real-sized mirror: 1,000,000 sessions (and their ledger) spread over a
year in MariaDB, the real `paykube-dashboard` process in front, and each page timed per
window (p50/p95 of the full answer on loopback: query, rendering and HTTP).

    PYTHONPATH=operator:dashboard:hack:. python bench/dashboard_bench.py [--sessions N]

The goal (issue 16) is p95 <= 300 ms for every page and window; each line prints its p95
as a ratio of that goal, beside /healthz measured in the same run (the floor: HTTP and
Basic Auth with no query). The loaded database is kept under $PAYKUBE_CACHE/bench/ and
reused while it holds the same sessions (loading a million takes minutes).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import os
import re
import secrets
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy
from sqlalchemy.pool import NullPool

from bench.common import percentile
from paykube.mirror.migrate import migrate
from paykube.mirror.projection import utcnow
from paykube_dev.dashboard_program import start_dashboard
from paykube_dev.dashboard_seed import bulk_load
from paykube_dev.proc import CACHE_DIR, free_port
from paykube_dev.services import MariaDB
from paykube_dev.services._base import new_base_dir

GOAL_MS = 300.0
WINDOWS = ("15m", "1h", "24h", "7d", "30d")
DATABASE = "paykube"


@dataclass(kw_only=True, eq=False)
class BenchMariaDB(MariaDB):
    """MariaDB sized for a million rows: a buffer pool that holds them, and LOAD DATA."""

    def _argv(self) -> list[str | Path]:
        return [*super()._argv(), "--innodb-buffer-pool-size=3G", "--local-infile=1",
                "--innodb-flush-log-at-trx-commit=2", "--innodb-log-file-size=512M"]


def start_database(directory: Path) -> BenchMariaDB:
    base, owned = new_base_dir("mariadb", directory)
    server = BenchMariaDB(base_dir=base, log=base / "mariadb.log", port=free_port(),
                          socket=base / "mariadbd.sock", password="bench-" + "x" * 12,
                          database=DATABASE, owns_base_dir=owned)
    return server.start()


def load(db: BenchMariaDB, sessions: int, span_days: int) -> float:
    """Make the mirror hold exactly `sessions` rows; returns the load's seconds (0 when the
    kept database already did)."""
    migrate(db.url)
    engine = sqlalchemy.create_engine(db.url, poolclass=NullPool)
    with engine.connect() as conn:
        have = conn.exec_driver_sql("SELECT COUNT(*) FROM payment_sessions").scalar_one()
    if have == sessions:
        engine.dispose()
        return 0.0
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE TABLE payment_session_transitions")
        conn.exec_driver_sql("TRUNCATE TABLE payment_sessions")
    engine.dispose()
    started = time.monotonic()
    print(f"loading {sessions:,} sessions over {span_days} days ...", flush=True)
    bulk_load(db.url, sessions, span=dt.timedelta(days=span_days), processes=2)
    with db.engine().connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE payment_sessions, payment_session_transitions")
    return time.monotonic() - started


def timed_get(url: str, auth: str) -> tuple[float, str]:  # loopback http only
    request = urllib.request.Request(url, headers={"Authorization": auth})  # noqa: S310
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body = response.read().decode()
        status = response.status
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200, (url, status)
    return elapsed, body


def measure(base: str, auth: str, path: str, samples: int) -> tuple[float, float, str]:
    timed_get(base + path, auth)  # warm: the first read of a range pulls its pages in
    times, body = [], ""
    for _ in range(samples):
        elapsed, body = timed_get(base + path, auth)
        times.append(elapsed)
    return percentile(times, 0.5), percentile(times, 0.95), body


def cases(db: BenchMariaDB) -> list[tuple[str, str]]:
    engine = db.engine()
    with engine.connect() as conn:
        uids = [r[0] for r in conn.exec_driver_sql(
            "SELECT uid FROM payment_sessions WHERE created_at > NOW() - INTERVAL 2 DAY "
            "ORDER BY uid LIMIT 3")]
        name = conn.exec_driver_sql("SELECT name FROM payment_sessions ORDER BY uid "
                                    "LIMIT 1").scalar_one()
    engine.dispose()
    out: list[tuple[str, str]] = [("overview " + w, "/?window=" + w) for w in WINDOWS]
    # The same spans as custom windows, which are always computed on request (the 7d and
    # 30d presets are served from the background computation).
    for days in (7, 30):
        start = (utcnow() - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")
        out.append((f"overview custom {days}d", "/?" + urlencode({"window": "custom",
                                                                 "from": start})))
    out += [("attention " + w, "/attention?window=" + w) for w in ("24h", "30d")]
    out += [("sessions (all)", "/sessions"),
            ("sessions phase=Failed", "/sessions?phase=Failed"),
            ("sessions ns+currency", "/sessions?" + urlencode({"namespace": "shop",
                                                               "currency": "eur"})),
            ("sessions last 7d", "/sessions?" + urlencode(
                {"from": (utcnow() - dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")})),
            ("sessions search name", "/sessions?" + urlencode({"q": name})),
            ("sessions page 2", "NEXT")]
    out += [(f"session detail {i + 1}", f"/sessions/{uid}") for i, uid in enumerate(uids)]
    out += [("errors " + w, "/errors?window=" + w) for w in WINDOWS]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--span-days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=CACHE_DIR / "bench" / "dashboard")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    with start_database(args.dir / "mariadb") as db:
        seconds = load(db, args.sessions, args.span_days)
        if seconds:
            print(f"loaded in {seconds:.0f} s", flush=True)
        password = secrets.token_hex(8)
        user_password = secrets.token_hex(12)
        with db.temporary_user("dash_bench", user_password, grant="SELECT"):
            url = sqlalchemy.engine.make_url(db.url).set(
                username="dash_bench", password=user_password)
            program = start_dashboard(args.dir / "dashboard.log", {
                "PAYKUBE_DATABASE_URL": url.render_as_string(hide_password=False),
                "PAYKUBE_DASHBOARD_USERNAME": "bench",
                "PAYKUBE_DASHBOARD_PASSWORD": password, "PAYKUBE_LOG_LEVEL": "WARNING"})
            try:
                report(program.url, "Basic " + base64.b64encode(
                    f"bench:{password}".encode()).decode(), cases(db), args)
            finally:
                program.stop()
    return 0


def report(base: str, auth: str, todo: list[tuple[str, str]],
           args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    floor50, floor95, _ = measure(base, auth, "/healthz", args.samples)
    print(f"\n{args.sessions:,} sessions over {args.span_days} days; {args.samples} samples "
          f"per case; goal p95 <= {GOAL_MS:.0f} ms")
    print(f"{'page':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'p95/goal':>9s}")
    print(f"{'/healthz (floor)':28s} {floor50:8.1f} {floor95:8.1f} {floor95 / GOAL_MS:9.2f}")
    next_page = ""
    worst = 0.0
    for label, path in todo:
        if path == "NEXT":
            path = next_page
        p50, p95, body = measure(base, auth, path, args.samples)
        if label == "sessions (all)":
            found = re.search(r'href="(/sessions\?[^"]*cursor=[^"]*)"', body)
            next_page = html.unescape(found.group(1)) if found else "/sessions"
        worst = max(worst, p95)
        print(f"{label:28s} {p50:8.1f} {p95:8.1f} {p95 / GOAL_MS:9.2f}", flush=True)
    print(f"\nworst p95: {worst:.1f} ms = {worst / GOAL_MS:.2f} x the goal; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")


if __name__ == "__main__":
    sys.exit(main())
