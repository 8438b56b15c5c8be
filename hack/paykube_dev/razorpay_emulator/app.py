"""The aiohttp application: the emulated Payment Links API and the control endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import api, control, page
from .appkeys import DISPATCHER, STATE
from .delivery import Dispatcher
from .state import RazorpayState

log = logging.getLogger(__name__)


def build_app(state: RazorpayState, *, sweep_interval: float = 0.5) -> web.Application:
    """An app serving `state`; it expires due links every `sweep_interval` seconds."""
    app = web.Application(middlewares=[api.razorpay_middleware], client_max_size=2 * 1024**2)
    app[STATE] = state
    app[DISPATCHER] = Dispatcher(state)
    api.add_routes(app)
    control.add_routes(app)
    page.add_routes(app)
    app.cleanup_ctx.append(_background(sweep_interval))
    return app


def _background(
    interval: float,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def context(app: web.Application) -> AsyncIterator[None]:
        dispatcher = app[DISPATCHER]
        await dispatcher.start()
        sweeper = asyncio.get_running_loop().create_task(_sweep(app, interval))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await dispatcher.close()

    return context


async def _sweep(app: web.Application, interval: float) -> None:
    state, dispatcher = app[STATE], app[DISPATCHER]
    while True:
        await asyncio.sleep(interval)
        try:
            for event in state.sweep():
                dispatcher.dispatch_later(event)
        except Exception:
            log.exception("expiry sweep failed")
