"""Run a module under cProfile and write the profile when it exits (SIGTERM included, for
aiohttp's and kopf's programs end cleanly on it); summarise a profile by library.

    python bench/profiled.py OUT.prof MODULE [ARGS...]

The benches use it to say where a program's CPU goes (the profile counts CPU time, not
wall-clock time): the shares matter, not the absolute times (the profiler itself slows
every Python call down)."""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import time
from collections import Counter
from pathlib import Path

# (part of the file name, library), first match wins.
_LIBRARIES = (
    ("/httpx/", "httpx"), ("/httpcore/", "httpcore"), ("/h11/", "h11"), ("/anyio/", "anyio"),
    ("/aiohttp/", "aiohttp"), ("/multidict/", "aiohttp"), ("/yarl/", "aiohttp"),
    ("/prometheus_client/", "prometheus_client"), ("/logging/", "logging"),
    ("/json/", "json"), ("/asyncio/", "asyncio"), ("/ssl.py", "ssl"),
    ("/paykube_webhook/", "paykube"), ("/paykube/", "paykube"), ("/kopf/", "kopf"),
    ("/stripe/", "stripe (SDK)"), ("/pydantic", "pydantic"), ("/hmac.py", "hmac"),
)


def library(filename: str, function: str) -> str:
    for part, name in _LIBRARIES:
        if part in filename:
            return name
    if filename == "~":  # a C function: name it by its module where it tells
        for part, name in (("_ssl", "ssl"), ("_hashlib", "hmac"), ("hmac", "hmac"),
                           ("json", "json"), ("select", "asyncio (epoll)"),
                           ("socket", "sockets")):
            if part in function:
                return name
        return "other C builtins"
    return "other Python"


def summary(path: Path, *, top: int = 12) -> list[str]:
    """Own time (tottime) by library, then the `top` functions, as printable lines."""
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    by_library: Counter[str] = Counter()
    functions: list[tuple[float, str]] = []
    total = 0.0
    for (filename, line, function), (_, _, tottime, _, _) in table.items():
        by_library[library(filename, function)] += tottime
        total += tottime
        short = filename.rsplit("site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
        functions.append((tottime, f"{short}:{line} {function}"))
    lines = ["own CPU by library: " + ", ".join(
        f"{name} {seconds / total:.0%}" for name, seconds in by_library.most_common()
        if seconds / total >= 0.01)]
    lines += [f"  {seconds / total:5.1%}  {name}"
              for seconds, name in sorted(functions, reverse=True)[:top]]
    return lines


def main() -> int:
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
