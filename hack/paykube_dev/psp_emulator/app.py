"""The background work every emulator app runs: its dispatcher, and a sweep that expires
due objects (and sends their events) every `interval` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger(__name__)


class Dispatching(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def dispatch_later(self, event: Any) -> None: ...


def background(
    dispatcher: Dispatching, sweep: Callable[[], list[Any]], interval: float,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """A cleanup context for `app.cleanup_ctx`."""

    @contextlib.asynccontextmanager
    async def context(app: web.Application) -> AsyncIterator[None]:
        await dispatcher.start()
        sweeper = asyncio.get_running_loop().create_task(_sweep(dispatcher, sweep, interval))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await dispatcher.close()

    return context


async def _sweep(dispatcher: Dispatching, sweep: Callable[[], list[Any]],
                 interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            for event in sweep():
                dispatcher.dispatch_later(event)
        except Exception:
            log.exception("expiry sweep failed")
