"""What every local service shares: one child process, a directory, a log, start/stop by PID."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from paykube_dev.proc import port_open, start_process, stop_process, wait_until

LOOPBACK = "127.0.0.1"

# Services started by this interpreter and not stopped yet: stopped at exit, so that an
# aborted test run does not leave brokers and databases behind (children run in their own
# session and do not get the terminal's Ctrl-C).
_live: set[Service] = set()


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_live):
        with contextlib.suppress(Exception):
            service.stop()


def new_base_dir(name: str, base_dir: Path | None) -> tuple[Path, bool]:
    """The directory to use and whether we created it (and so may delete it on close)."""
    if base_dir is not None:
        base_dir.mkdir(parents=True, exist_ok=True)
        return base_dir.resolve(), False
    return Path(tempfile.mkdtemp(prefix=f"paykube-{name}-")).resolve(), True


def find_program(*names: str, extra_dirs: Sequence[str] = ("/usr/sbin", "/sbin")) -> str | None:
    """First of `names` on PATH or in `extra_dirs` (daemons live in sbin, off a user's PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *extra_dirs])
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def log_tail(log: Path, lines: int = 40) -> str:
    """The last lines of a log, for error messages."""
    if not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {log} ---\n" + "\n".join(text)


def http_status(url: str, *, headers: Mapping[str, str] | None = None,
                timeout: float = 1.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


@dataclass(kw_only=True, eq=False)
class Service:
    """One child process on loopback with its own directory and log.

    `start()` launches it and waits until it really serves (raising with the log tail if it
    dies or times out); `stop()` ends it gracefully (SIGTERM to its process group, SIGKILL
    if it lingers); `kill()` simulates a crash. Both keep the directory, ports and data, so
    `start()` again brings the same service back. `close()` stops and, if the directory
    was a temporary one made by the factory, deletes it. Handles are context managers.
    """

    what: ClassVar[str] = "service"
    startup_timeout: ClassVar[float] = 60.0
    stop_timeout: ClassVar[float] = 30.0

    base_dir: Path
    """Everything of this instance lives here: data, log, sockets, temp files."""
    log: Path
    """Output of the child (appended across restarts)."""
    startup_seconds: float | None = field(default=None, init=False)
    """Duration of the last successful start(): initialisation (if any), launch, ready."""
    owns_base_dir: bool = field(default=False, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    # -- to be provided by each service -------------------------------------------------
    def _argv(self) -> list[str | Path]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def ports(self) -> list[int]:
        """The TCP ports this service listens on."""
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _prepare(self) -> None:
        """Called before every launch (first-time initialisation goes here)."""

    def _after_ready(self) -> None:
        """Called after every successful start (idempotent provisioning goes here)."""

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Launch and wait until ready; a no-op if already running."""
        if self.running:
            return self
        busy = [port for port in self.ports() if port_open(port)]
        if busy:
            # Else the readiness check would happily talk to whoever holds the port.
            raise RuntimeError(f"{self.what}: port {', '.join(map(str, busy))} already in use")
        began = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        argv = self._argv()
        self._note(f"starting: {' '.join(map(str, argv))}")
        proc = start_process(argv, log=self.log, env=self._env(), cwd=self.base_dir)
        self._proc = proc
        _live.add(self)
        try:
            wait_until(self._ready, timeout=self.startup_timeout, what=self.what, proc=proc,
                       log=self.log, interval=0.05)
            if proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {proc.returncode}"
                                   f"{log_tail(self.log)}")
            self._after_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after `stop_timeout`); keeps all data."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is not None:
            stop_process(proc, timeout=self.stop_timeout)
            self._note(f"stopped (exit {proc.returncode})")

    def kill(self) -> None:
        """Crash: SIGKILL the process group, no shutdown at all; keeps all data."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self._note("killed")

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, and delete the directory if the factory created it."""
        self.stop()
        if self.owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _note(self, message: str) -> None:
        """A marker line in the log, so restarts are easy to find."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(f"--- paykube-dev {time.strftime('%H:%M:%S')} {self.what}: {message}\n")
