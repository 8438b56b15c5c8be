"""Start `paykube-dashboard` as a real subprocess (as a container runs it: `python -m
paykube_dashboard` plus environment), for the tests, the demo and the benchmark."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from paykube_dev.proc import free_port, start_process, wait_until
from paykube_dev.programs import REPO, Program, _http_ok


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
