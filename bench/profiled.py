"""Run a module under cProfile and write the profile when it exits (SIGTERM included, for
aiohttp's and kopf's programs end cleanly on it); summarise a profile by library. Or, with
`--memory`, under tracemalloc: a snapshot of the live allocations is written on SIGUSR1.

    python bench/profiled.py OUT.prof MODULE [ARGS...]
    python bench/profiled.py --memory OUT.snapshot MODULE [ARGS...]

The benches use it to say where a program's CPU goes (the profile counts CPU time, not
wall-clock time): the shares matter, not the absolute times (the profiler itself slows
every Python call down)."""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import runpy
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

_C_FUNCTIONS = (("_ssl", "ssl"), ("_hashlib", "hmac"), ("hmac", "hmac"), ("json", "json"),
                ("select", "asyncio (epoll)"), ("socket", "sockets"))


def library(filename: str, function: str) -> str:
    """Which library a profiled function belongs to: paykube's own packages, a package in
    site-packages (by its top-level name; the venv lives under a `paykube` cache directory,
    so the path alone would mislead), a standard library module, or a C function."""
    if filename == "~":  # a C function: name it by its module where it tells
        for part, name in _C_FUNCTIONS:
            if part in function:
                return name
        return "other C builtins"
    if "site-packages/" in filename:
        top = filename.rsplit("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return {"multidict": "aiohttp", "yarl": "aiohttp", "_cffi_backend": "cffi"}.get(
            top, top)
    for part in ("/operator/paykube/", "/webhook/paykube_webhook/", "/hack/paykube_dev/"):
        if part in filename:
            return "paykube"
    if "/lib/python3" in filename:  # the standard library, by module
        module = filename.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
        return f"{module} (stdlib)"
    return "other"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/", "/lib/python3.12/"):
        filename = filename.rsplit(marker, 1)[-1]
    return filename


def summary(path: Path, *, top: int = 12, cumulative_top: int = 8) -> list[str]:
    """Own time (tottime) by library, the `top` functions, and paykube's functions by
    cumulative time, as printable lines."""
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    by_library: Counter[str] = Counter()
    functions: list[tuple[float, str, tuple[str, int, str]]] = []
    total = 0.0
    for (filename, line, function), (_, _, tottime, _, _) in table.items():
        by_library[library(filename, function)] += tottime
        total += tottime
        short = _short(filename)
        functions.append((tottime, f"{short}:{line} {function}", (filename, line, function)))
    lines = ["own CPU by library: " + ", ".join(
        f"{name} {seconds / total:.0%}" for name, seconds in by_library.most_common()
        if seconds / total >= 0.01)]
    ranked = sorted(functions, reverse=True)[:top]
    for seconds, name, key in ranked:
        # The caller that accounts for most of it (recursion through the same function
        # left out), so that a generic function (deepcopy, dict.get) is placed.
        callers = [(timing[3], caller) for caller, timing in table[key][4].items()
                   if caller != key]
        via = ""
        if callers:
            _, (filename, line, function) = max(callers)
            via = f"  <- {_short(filename)}:{line} {function}"
        lines.append(f"  {seconds / total:5.1%}  {name}{via}")
    # Inside paykube's own code, callees included: what paykube adds around the libraries.
    own = sorted(((timing[3], key) for key, timing in table.items()
                  if library(key[0], key[2]) == "paykube"), reverse=True)
    lines.append("paykube's functions by CPU including their callees:")
    lines += [f"  {cumulative / total:5.1%}  {_short(filename)}:{line} {function}"
              for cumulative, (filename, line, function) in own[:cumulative_top]]
    return lines


def memory_summary(path: Path, *, top: int = 15) -> list[str]:
    """Live allocations in a tracemalloc snapshot: by library, and the largest allocating
    lines with the stack that led to them (the innermost frames first)."""
    snapshot = tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    by_library: Counter[str] = Counter()
    for stat in snapshot.statistics("filename"):
        by_library[library(stat.traceback[0].filename, "")] += stat.size
    total = sum(by_library.values())
    lines = [f"live Python allocations: {total / 2**20:.1f} MiB; by library: " + ", ".join(
        f"{name} {size / 2**20:.1f} MiB" for name, size in by_library.most_common()
        if size / total >= 0.01)]
    for stat in snapshot.statistics("traceback")[:top]:
        frames = " <- ".join(f"{_short(f.filename)}:{f.lineno}"
                             for f in reversed(stat.traceback[-4:]))
        lines.append(f"  {stat.size / 2**20:6.1f} MiB {stat.count:8d} blocks  {frames}")
    return lines


def _traced(out: str) -> None:
    """Trace allocations from here on (8 frames each); SIGUSR1 writes a snapshot."""
    tracemalloc.start(8)

    def dump(*_: object) -> None:
        tracemalloc.take_snapshot().dump(out + ".part")
        Path(out + ".part").rename(out)

    signal.signal(signal.SIGUSR1, dump)


def main() -> int:
    if sys.argv[1] == "--memory":
        out, module, *args = sys.argv[2:]
        _traced(out)
        sys.argv = [module, *args]
        with contextlib.suppress(SystemExit):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    out, module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    # CPU time, not wall-clock time: an idle wait in epoll must not count as work.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
