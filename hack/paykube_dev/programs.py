"""Start paykube's own programs (operator, webhook) as real subprocesses, for tests and
the demo, exactly as a container would run them: `python -m <package>` plus environment."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.proc import free_port, start_process, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]


def _env(kubeconfig: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYKUBE_")}
    path = os.pathsep.join(str(REPO / d) for d in ("operator", "webhook"))
    env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["KUBECONFIG"] = str(kubeconfig)
    env.update(extra)
    return env


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Program:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed pod would die."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def start_operator(kubeconfig: Path, log: Path, env: Mapping[str, str]) -> Program:
    port, metrics_port = free_port(), free_port()
    proc = start_process(
        [sys.executable, "-m", "paykube.operator"], log=log,
        env=_env(kubeconfig, {"PAYKUBE_OPERATOR_HOST": "127.0.0.1",
                              "PAYKUBE_HEALTH_PORT": str(port),
                              "PAYKUBE_METRICS_PORT": str(metrics_port), **env}),
    )
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60,
               what="paykube operator", proc=proc, log=log, interval=0.2)
    return Program("operator", proc, log, port, metrics_port)


def start_webhook(kubeconfig: Path, log: Path, env: Mapping[str, str], *,
                  ready_path: str = "/readyz") -> Program:
    port = free_port()
    proc = start_process(
        [sys.executable, "-m", "paykube_webhook"], log=log,
        env=_env(kubeconfig, {"PAYKUBE_WEBHOOK_PORT": str(port),
                              "PAYKUBE_WEBHOOK_HOST": "127.0.0.1", **env}),
    )
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}{ready_path}"), timeout=60,
               what="paykube webhook", proc=proc, log=log, interval=0.2)
    return Program("webhook", proc, log, port)
