"""Shared pieces of the benchmarks: the platform, process stats and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from paykube_dev.kube import REPO, ControlPlane

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def platform() -> Iterator[tuple[ControlPlane, Path]]:
    with tempfile.TemporaryDirectory(prefix="paykube-bench-") as tmp, \
            ControlPlane.started(Path(tmp) / "kube") as plane:
        # Every kind the operator serves: without one kopf warns and waits for it.
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            plane.install_crd(crd)
        yield plane, Path(tmp)


@dataclass(frozen=True)
class ProcessStats:
    cpu_seconds: float
    peak_rss_mib: float


def process_stats(pid: int) -> ProcessStats:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return ProcessStats(cpu, peak)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far; None once it is gone."""
    try:
        return process_stats(pid).cpu_seconds
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def load_average() -> str:
    """The machine's 1/5/15-minute load average: a busy machine shows here first."""
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def plane_processes(plane: ControlPlane) -> dict[str, int]:
    """PIDs of the control plane's etcd and kube-apiserver, found by their data directory
    (the plane does not publish them)."""
    found: dict[str, int] = {}
    marker = str(plane.directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or marker.encode() not in b" ".join(argv):
            continue
        program = Path(argv[0].decode(errors="replace")).name
        for name in ("kube-apiserver", "etcd"):
            if program.startswith(name):
                found[name] = int(entry.name)
    return found


@dataclass
class _Tracked:
    started_at: float
    started_cpu: float
    last_at: float
    last_cpu: float
    busiest: float = 0.0


class CpuSampler:
    """CPU of every process involved, sampled once a second in a thread, so that a run on
    a machine busy with something else can be told from a slow paykube: the averages
    should add up to what the phase did, and the load average says what else ran."""

    def __init__(self, processes: dict[str, int], interval: float = 1.0) -> None:
        self.interval = interval
        self._tracked: dict[str, _Tracked] = {}
        self._pids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        for name, pid in processes.items():
            self.add(name, pid)

    def add(self, name: str, pid: int) -> None:
        """Track one more process from now on (a load generator started mid-phase)."""
        cpu = cpu_seconds(pid)
        if cpu is None:
            return
        now = time.monotonic()
        with self._lock:
            self._pids[name] = pid
            self._tracked[name] = _Tracked(now, cpu, now, cpu)

    def _sample(self) -> None:
        with self._lock:
            for name, pid in self._pids.items():
                cpu = cpu_seconds(pid)
                if cpu is None:
                    continue
                now = time.monotonic()
                tracked = self._tracked[name]
                if now > tracked.last_at:
                    tracked.busiest = max(tracked.busiest, (cpu - tracked.last_cpu)
                                          / (now - tracked.last_at))
                tracked.last_at, tracked.last_cpu = now, cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def seconds(self, name: str) -> float:
        tracked = self._tracked.get(name)
        return 0.0 if tracked is None else tracked.last_cpu - tracked.started_cpu

    def averages(self) -> dict[str, tuple[float, float]]:
        """name -> (average, busiest second), each as a share of one core."""
        result = {}
        for name, t in self._tracked.items():
            span = t.last_at - t.started_at
            result[name] = ((t.last_cpu - t.started_cpu) / span if span > 0 else 0.0,
                            t.busiest)
        return result

    def line(self) -> str:
        parts = [f"{name} {avg:.0%} (max {busiest:.0%})"
                 for name, (avg, busiest) in self.averages().items()]
        return "CPU, share of one core, sampled 1/s: " + ", ".join(parts)


T = TypeVar("T")


def run_like_paykube(coro: Coroutine[Any, Any, T]) -> T:
    """Run a bare loop on the event loop paykube's programs use (uvloop), so that a ceiling
    and the program it is compared with differ only in paykube's own work."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
