"""The aiohttp application: the emulated Payment Links API and the control endpoints."""

from __future__ import annotations

from aiohttp import web

from paykube_dev.psp_emulator.app import background

from . import api, control, page
from .appkeys import DISPATCHER, STATE
from .delivery import Dispatcher
from .state import RazorpayState


def build_app(state: RazorpayState, *, sweep_interval: float = 0.5) -> web.Application:
    """An app serving `state`; it expires due links every `sweep_interval` seconds."""
    app = web.Application(middlewares=[api.razorpay_middleware], client_max_size=2 * 1024**2)
    app[STATE] = state
    app[DISPATCHER] = Dispatcher(state)
    api.add_routes(app)
    control.add_routes(app)
    page.add_routes(app)
    app.cleanup_ctx.append(background(app[DISPATCHER], state.sweep, sweep_interval))
    return app
