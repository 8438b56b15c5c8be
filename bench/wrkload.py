"""Drive a URL with `wrk` (Debian's package, installed by hack/install-services.sh): a
compiled load generator, so that the figure is the server's and not a Python client's.

The request is a POST of a fixed body with fixed headers (a Lua script), or one of a list of
bodies, each with its own signature, sent in turn (`write_events_script`); wrk's `done` hook
prints the summary as one JSON line, which is parsed here."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import CpuSampler

_DONE = """\
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, '
    .. '"p999_us": %d}}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""
_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
""" + _DONE
# One Lua state with -t1: the index is shared by all connections, so each body goes once
# until the list runs out (then they repeat: the caller compares the count).
_EVENTS = """\
wrk.method = "POST"
{headers}
local bodies = {{
{bodies}
}}
local signatures = {{
{signatures}
}}
local i = 0
local primed = false
request = function()
  -- wrk calls this once per thread before it connects, and does not send that request
  if not primed then
    primed = true
    return wrk.format(nil, nil, nil, bodies[1])
  end
  i = i + 1
  if i > #bodies then i = 1 end
  wrk.headers["{signature_header}"] = signatures[i]
  return wrk.format(nil, nil, nil, bodies[i])
end
""" + _DONE


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx_3xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        return (f"{self.rate:,.0f} requests/s ({self.requests} in {self.seconds:.1f} s), "
                f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
                f"p999 {self.p999_ms:.2f} ms; non-2xx {self.non_2xx_3xx}, "
                f"socket errors {self.socket_errors}")

    @staticmethod
    def combined(results: list[WrkResult]) -> WrkResult:
        """Several wrk processes run at once (for the same duration): their requests add
        up, latencies are the worst of them."""
        seconds = sum(r.seconds for r in results) / len(results)
        return WrkResult(sum(r.requests for r in results), seconds,
                         sum(r.non_2xx_3xx for r in results),
                         sum(r.socket_errors for r in results),
                         max(r.p50_ms for r in results), max(r.p99_ms for r in results),
                         max(r.p999_ms for r in results))


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: run hack/install-services.sh "
                         "(Debian package `wrk`)")
    return found


def write_script(path: Path, body: str, headers: dict[str, str]) -> Path:
    if "]==]" in body:
        raise ValueError("the body must not contain the Lua long-bracket end ]==]")
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                      for k, v in headers.items())
    path.write_text(_SCRIPT.format(body=body, headers=lines))
    return path


def write_events_script(path: Path, events: list[tuple[str, str]], signature_header: str,
                        headers: dict[str, str]) -> Path:
    """A script that posts each (body, signature) of `events` in turn."""
    if any("]==]" in body for body, _ in events):
        raise ValueError("a body must not contain the Lua long-bracket end ]==]")
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                      for k, v in headers.items())
    path.write_text(_EVENTS.format(
        headers=lines, signature_header=signature_header,
        bodies=",\n".join(f"[==[{body}]==]" for body, _ in events),
        signatures=",\n".join(json.dumps(signature) for _, signature in events)))
    return path


def parse(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line.removeprefix("WRKJSON "))
            return WrkResult(
                data["requests"], data["duration_us"] / 1e6, data["non_2xx_3xx"],
                data["connect"] + data["read"] + data["write"] + data["timeout"],
                data["p50_us"] / 1000, data["p99_us"] / 1000, data["p999_us"] / 1000)
    raise RuntimeError(f"no summary from wrk:\n{output}")


def run_wrk(urls: list[str], script: Path, *, connections: int, duration: float,
            cpu: CpuSampler | None = None, label: str = "wrk") -> WrkResult:
    """One `wrk -t1 -c<connections>` per URL, all at once (a second webhook process gets
    a load generator of its own); each wrk process is added to `cpu`'s sampling."""
    argv = [wrk_binary(), "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
            "-s", str(script)]
    procs = [subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for url in urls]
    try:
        if cpu is not None:
            for index, proc in enumerate(procs):
                cpu.add(label if len(procs) == 1 else f"{label}#{index + 1}", proc.pid)
        outputs = [proc.communicate(timeout=duration + 60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = [parse(out) for out in outputs]
    return results[0] if len(results) == 1 else WrkResult.combined(results)
