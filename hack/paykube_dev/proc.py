"""Small process and network helpers shared by every local service."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

CACHE_DIR = Path(os.environ.get("PAYKUBE_CACHE", Path.home() / ".cache" / "paykube"))


_PORTS_BELOW = 10000  # the lowest port handed out
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` (loopback by default) that is free right now, chosen below the
    kernel's ephemeral range: a port the kernel handed out (bind to 0) could be taken by
    any outgoing connection before the service binds it, as etcd once found."""
    top = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(200) if top - _PORTS_BELOW > 1000 else ():
        port = rng.randrange(_PORTS_BELOW, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1,
    proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
) -> None:
    """Poll `check` until true; fail with the log tail if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{_tail(log)}")
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " ---\n" + "\n".join(text)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the process that started us dies, so that a killed
    test run or benchmark leaves no servers behind."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, only called after


def start_process(
    argv: Sequence[str | Path], *, log: Path, env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, preexec_fn=_die_with_parent,
        )


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    """SIGTERM the child's own process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
