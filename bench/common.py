"""Shared pieces of the benchmarks: the platform, process stats and percentiles."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.kube import REPO, ControlPlane

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def platform() -> Iterator[tuple[ControlPlane, Path]]:
    with tempfile.TemporaryDirectory(prefix="paykube-bench-") as tmp, \
            ControlPlane.started(Path(tmp) / "kube") as plane:
        for crd in ("paymentsession", "paymentprovider", "clusterpaymentprovider"):
            plane.install_crd(REPO / "crds" / f"{crd}.yaml")
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
