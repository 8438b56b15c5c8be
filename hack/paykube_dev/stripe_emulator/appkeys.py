"""Typed keys for what the aiohttp app and its requests carry."""

from __future__ import annotations

from aiohttp import web

from .accounts import Scope
from .delivery import Dispatcher
from .forms import Params
from .state import EmulatorState

STATE = web.AppKey("stripe_emulator_state", EmulatorState)
DISPATCHER = web.AppKey("stripe_emulator_dispatcher", Dispatcher)

REQUEST_ID = web.RequestKey("stripe_emulator_request_id", str)
SCOPE = web.RequestKey("stripe_emulator_scope", Scope)
PARAMS = web.RequestKey[Params]("stripe_emulator_params")
OBJECT_ID = web.RequestKey("stripe_emulator_object_id", str)

__all__ = ["DISPATCHER", "OBJECT_ID", "PARAMS", "REQUEST_ID", "SCOPE", "STATE", "Params"]
