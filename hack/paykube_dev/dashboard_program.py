"""Start `paykube-dashboard` as a real subprocess (as a container runs it: `python -m
paykube_dashboard` plus environment), for the tests, the demo and the benchmark; and the
demo's dashboard over a seeded mirror."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube.mirror.migrate import migrate
from paykube_dev.dashboard_seed import generate, seed
from paykube_dev.proc import free_port, start_process, wait_until
from paykube_dev.programs import REPO, Program, _http_ok
from paykube_dev.services import MariaDB


def dashboard_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYKUBE_")}
    path = os.pathsep.join(str(REPO / d) for d in ("operator", "dashboard"))
    env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def start_dashboard(log: Path, env: Mapping[str, str], *, port: int | None = None) -> Program:
    """The dashboard on 127.0.0.1 (a free port unless given), once its /readyz says the
    mirror answers."""
    port = port or free_port()
    proc = start_process(
        [sys.executable, "-m", "paykube_dashboard"], log=log,
        env=dashboard_env({"PAYKUBE_DASHBOARD_HOST": "127.0.0.1",
                           "PAYKUBE_DASHBOARD_PORT": str(port), **env}))
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=60,
               what="paykube dashboard", proc=proc, log=log, interval=0.2)
    return Program("dashboard", proc, log, port)


DEMO_LOGIN = ("demo", "paykube-demo")


def start_demo_dashboard(database: MariaDB, directory: Path, *, sessions: int = 300) -> Program:
    """For `make demo`: a few hundred sessions of the last days in the mirror, a SELECT-only
    database user, and the dashboard behind the demo login (DEMO_LOGIN)."""
    migrate(database.url)  # the operator's writer migrates too; GET_LOCK serialises them
    engine = sqlalchemy.create_engine(database.url, poolclass=NullPool)
    try:
        seed(engine, generate(sessions))
    finally:
        engine.dispose()
    password = secrets.token_hex(12)
    admin = sqlalchemy.create_engine(database.admin_url, poolclass=NullPool,
                                     hide_parameters=True)
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE OR REPLACE USER 'dashboard'@'%' "
                                         "IDENTIFIED BY :pw"), {"pw": password})
            conn.execute(sqlalchemy.text(
                f"GRANT SELECT ON `{database.database}`.* TO 'dashboard'@'%'"))
    finally:
        admin.dispose()
    url = sqlalchemy.engine.make_url(database.url).set(username="dashboard",
                                                       password=password)
    return start_dashboard(directory / "dashboard.log", {
        "PAYKUBE_DATABASE_URL": url.render_as_string(hide_password=False),
        "PAYKUBE_DASHBOARD_USERNAME": DEMO_LOGIN[0],
        "PAYKUBE_DASHBOARD_PASSWORD": DEMO_LOGIN[1]})
