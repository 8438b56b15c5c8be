"""A local OpenAI-compatible chat-completions server for tests: answers, is slow, or is
down on demand, and records every request (to check what a prompt carried)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from paykube_dev.proc import free_port

ANSWER = ("Stripe does not know this parameter combination. Remove spec.customerEmail and "
          "create the PaymentSession again.")


class FakeOpenAI:
    def __init__(self) -> None:
        self.mode = "answer"
        self.answer = ANSWER
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.mode = "answer" if self.mode == "down" else self.mode

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.release = asyncio.Event()

    def release_from_thread(self) -> None:
        """Let the requests held in `slow` mode answer now; safe from another thread (an
        asyncio.Event set from outside its loop wakes no waiter)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.release.set)

    async def go_down(self) -> None:
        await self.stop()
        self.mode = "down"

    async def _completions(self, request: web.Request) -> web.Response:
        raw = await request.text()
        self.requests.append({"body": json.loads(raw), "raw": raw,
                              "headers": dict(request.headers)})
        if self.mode == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), timeout=20)
        body = json.loads(raw)
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "test"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.answer}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })



@contextlib.contextmanager
def threaded_openai() -> Iterator[FakeOpenAI]:
    """The server on its own event loop in a thread, for sync tests and other processes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeOpenAI()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
