"""Injected faults: 429s, 5xx, latency, held responses and dropped connections.

The fault book is the same for every PSP; what a fault looks like on the wire (the error
body of a 429 or a 500) is the PSP's own, built by its middleware from the fault's fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .clock import JsonObject, new_id

COMMON_KINDS = ("rate_limit", "api_error", "latency", "hold", "drop", "garbage")


class FaultSpecError(ValueError):
    """A control request asked for a fault that makes no sense."""


@dataclass
class Fault:
    """Applies to the next `remaining` API requests that match (None: until cleared), each
    with `probability` (so "30% of responses are 429" is `probability=0.3, count=None`).

    - rate_limit: answer 429 (`Retry-After`, `Stripe-Rate-Limited-Reason`); nothing happens.
    - api_error: answer 500 `api_error`; nothing happens.
    - latency: wait `seconds`, then handle normally.
    - hold: handle the request (the session exists), then keep the response until
      `POST /_emulator/release` or `seconds` (default 300) pass.
    - drop: handle the request, then close the connection without an answer.
    - <psp>_error (stripe_error, razorpay_error): answer `status` with the PSP's error of
      `code`, `message`, `param` (any error it can give, e.g. one paykube's catalog does
      not know).
    - garbage: handle the request, then answer with its body cut in half (not JSON), as a
      connection closed mid-body or a broken proxy would.

    `retry_after_date` sends a rate limit's `Retry-After` as an HTTP-date (RFC 9110 allows
    both forms) instead of seconds.
    """

    kind: str
    remaining: int | None = 1
    method: str | None = None
    path: str | None = None
    path_prefix: str = "/v1/"
    seconds: float = 0.0
    retry_after: int | None = 1
    retry_after_date: bool = False
    reason: str = "global-rate"
    should_retry: bool | None = None
    probability: float = 1.0
    status: int = 400
    code: str | None = None
    message: str = "The request was refused."
    param: str | None = None
    id: str = field(default_factory=lambda: new_id("flt_", 12))

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and self.path != path:
            return False
        return path.startswith(self.path_prefix)

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "kind": self.kind, "remaining": self.remaining,
            "method": self.method, "path": self.path, "path_prefix": self.path_prefix,
            "seconds": self.seconds, "retry_after": self.retry_after,
            "retry_after_date": self.retry_after_date, "reason": self.reason,
            "should_retry": self.should_retry, "probability": self.probability,
            "status": self.status, "code": self.code, "message": self.message,
            "param": self.param,
        }

    @classmethod
    def from_json(
        cls, body: JsonObject, kinds: Sequence[str] = COMMON_KINDS,
        reasons: Sequence[str] = ("global-rate",),
    ) -> Fault:
        """A fault from a control request; `kinds` and rate-limit `reasons` are the PSP's."""
        kind = body.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            raise FaultSpecError(f"kind must be one of {', '.join(kinds)}")
        count = body.get("count", 1)
        if count is not None and (not isinstance(count, int) or count < 1):
            raise FaultSpecError("count must be a positive integer or null (until cleared)")
        reason = body.get("reason", reasons[0])
        if reason not in reasons:
            raise FaultSpecError(f"reason must be one of {', '.join(reasons)}")
        seconds = float(body.get("seconds") or (300.0 if kind == "hold" else 0.0))
        probability = body.get("probability", 1.0)
        if not isinstance(probability, int | float) or not 0 < probability <= 1:
            raise FaultSpecError("probability must be a number in (0, 1]")
        return cls(
            kind=kind, remaining=count, method=_opt_str(body, "method"),
            path=_opt_str(body, "path"), path_prefix=_opt_str(body, "path_prefix") or "/v1/",
            seconds=seconds, retry_after=body.get("retry_after", 1),
            retry_after_date=bool(body.get("retry_after_date", False)), reason=reason,
            should_retry=body.get("should_retry"), probability=float(probability),
            status=int(body.get("status", 400)), code=_opt_str(body, "code"),
            message=_opt_str(body, "message") or "The request was refused.",
            param=_opt_str(body, "param"),
        )


def _opt_str(body: JsonObject, name: str) -> str | None:
    value: Any = body.get(name)
    if value is not None and not isinstance(value, str):
        raise FaultSpecError(f"{name} must be a string")
    return value


@dataclass
class Held:
    """A handled request whose response waits for release."""

    request_id: str
    method: str
    path: str
    status: int
    object_id: str | None
    at: float
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def to_api(self) -> JsonObject:
        return {
            "request_id": self.request_id, "method": self.method, "path": self.path,
            "status": self.status, "object_id": self.object_id, "at": self.at,
        }


class FaultBook:
    def __init__(self, seed: int = 0) -> None:
        self.faults: list[Fault] = []
        self.held: list[Held] = []
        self._rng = random.Random(seed)  # seeded: a fault pattern is repeatable

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, counted as used."""
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.probability < 1 and self._rng.random() >= fault.probability:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self.faults.clear()

    def release(self, count: int | None = None) -> int:
        waiting = [h for h in self.held if not h.released.is_set()]
        chosen = waiting if count is None else waiting[:count]
        for held in chosen:
            held.released.set()
        return len(chosen)


async def hold(book: FaultBook, fault: Fault, held: Held) -> None:
    """Keep a handled request's answer until released or `fault.seconds` pass."""
    book.held.append(held)
    try:
        await asyncio.wait_for(held.released.wait(), fault.seconds)
    except TimeoutError:
        pass
    finally:
        with contextlib.suppress(ValueError):
            book.held.remove(held)


async def after_handling(
    book: FaultBook, fault: Fault | None, request: web.Request, response: web.StreamResponse,
    request_id: str, object_id: str | None,
) -> web.StreamResponse:
    """The faults that act once the request was handled: garbage, hold, drop."""
    if fault is None:
        return response
    if fault.kind == "garbage" and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        garbled = web.Response(status=response.status, body=body[: len(body) // 2],
                               content_type="application/json", charset="utf-8")
        garbled.headers.update({k: v for k, v in response.headers.items()
                                if k not in ("Content-Type", "Content-Length")})
        response = garbled
    if fault.kind == "hold":
        await hold(book, fault, Held(
            request_id=request_id, method=request.method, path=request.path,
            status=response.status, object_id=object_id, at=time.time(),
        ))
    if fault.kind == "drop" and request.transport is not None:
        request.transport.abort()
    return response
