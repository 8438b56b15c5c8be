"""Typed keys for what the aiohttp app and its requests carry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .accounts import Scope
from .delivery import Dispatcher
from .state import RazorpayState

STATE = web.AppKey("razorpay_emulator_state", RazorpayState)
DISPATCHER = web.AppKey("razorpay_emulator_dispatcher", Dispatcher)

REQUEST_ID = web.RequestKey("razorpay_emulator_request_id", str)
SCOPE = web.RequestKey("razorpay_emulator_scope", Scope)
BODY = web.RequestKey[dict[str, Any]]("razorpay_emulator_body")
OBJECT_ID = web.RequestKey("razorpay_emulator_object_id", str)
