"""The aiohttp application: the emulated API, the control endpoints, the demo page."""

from __future__ import annotations

from aiohttp import web

from paykube_dev.psp_emulator.app import background

from . import api, control, page, refund_routes, resources
from .appkeys import DISPATCHER, STATE
from .delivery import Dispatcher
from .state import EmulatorState


def build_app(state: EmulatorState, *, sweep_interval: float = 0.5) -> web.Application:
    """An app serving `state`; it expires due sessions every `sweep_interval` seconds."""
    app = web.Application(middlewares=[api.stripe_middleware], client_max_size=1024**2)
    app[STATE] = state
    app[DISPATCHER] = Dispatcher(state)
    api.add_routes(app)
    resources.add_routes(app)
    refund_routes.add_routes(app)
    control.add_routes(app)
    page.add_routes(app)
    app.cleanup_ctx.append(background(app[DISPATCHER], state.sweep, sweep_interval))
    return app
