"""The webhook bench's wrk driver, for real: the Lua script it writes posts the body and
headers given, and its `done` hook's summary is what the bench parses (a broken script or
a changed wrk output would otherwise show only as a bench that prints nothing)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from bench.wrkload import parse, run_wrk, write_events_script, write_script

from paykube_dev.proc import free_port, port_open, start_process, stop_process, wait_until

BARE = Path(__file__).resolve().parents[2] / "bench" / "bare_aiohttp.py"


Handler = Callable[[web.Request], Awaitable[web.Response]]


def wrk_against(handler: Handler, script: Path, path: str) -> None:
    """One second of `wrk -t1 -c1` with `script` against an aiohttp server of `handler`."""
    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await asyncio.to_thread(run_wrk, [f"http://127.0.0.1:{port}{path}"], script,
                                    connections=1, duration=1)
        finally:
            await runner.cleanup()

    asyncio.run(serve())


def test_wrk_posts_the_body_and_headers_and_the_summary_parses(tmp_path: Path) -> None:
    port = free_port()
    proc = start_process([sys.executable, str(BARE), str(port)], log=tmp_path / "bare.log")
    try:
        wait_until(lambda: port_open(port), timeout=30, what="bare aiohttp", proc=proc,
                   log=tmp_path / "bare.log")
        body = json.dumps({"padding": "x" * 2000, "quote": "it's \"quoted\" [[ ]]"})
        script = write_script(tmp_path / "post.lua", body, {
            "Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"})
        result = run_wrk([f"http://127.0.0.1:{port}/webhooks/stripe"], script,
                         connections=2, duration=1)
    finally:
        stop_process(proc)
    assert result.requests > 0
    # Every answer was the handler's 400 (a GET or a bad path would be 405/404, also
    # non-2xx, hence the request check below), and no socket failed.
    assert result.non_2xx_3xx == result.requests
    assert result.socket_errors == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms


def test_the_request_wrk_sends_is_the_scripted_post(tmp_path: Path) -> None:
    """What reaches the server: method, path, headers and the exact body."""
    seen: list[tuple[str, str, str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers["Content-Type"],
                     request.headers["Stripe-Signature"], await request.read()))
        return web.Response(status=400)

    body = json.dumps({"a": "b" * 100})
    script = write_script(tmp_path / "post.lua", body, {
        "Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"})

    wrk_against(record, script, "/webhooks/stripe")
    assert seen
    assert set(seen) == {("POST", "/webhooks/stripe", "application/json", "t=1,v1=bad",
                          body.encode())}


def test_an_events_script_sends_each_body_with_its_signature_in_turn(tmp_path: Path) -> None:
    """(a)'s script: each event once, in order, with its own signature, then repeats."""
    seen: list[tuple[str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.headers["Stripe-Signature"], await request.read()))
        return web.Response(status=200)

    events = [(json.dumps({"n": n, "pad": "x" * n}), f"t=1,v1=sig{n}") for n in range(50)]
    script = write_events_script(tmp_path / "events.lua", events, "Stripe-Signature",
                                 {"Content-Type": "application/json"})

    wrk_against(record, script, "/")
    assert len(seen) > len(events), "a second round began"
    expected = [(signature, body.encode()) for body, signature in events]
    assert seen[:len(events)] == expected
    assert seen[len(events):2 * len(events)] == expected[:len(seen) - len(events)]


def test_a_summary_without_the_hook_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no summary from wrk"):
        parse("Running 1s test @ http://x\n  1 threads and 1 connections\n")
