"""Stripe Checkout as a PaymentProvider, over plain HTTPS (httpx, injectable transport).

Also owns the mapping from Stripe sessions and events to lifecycle observations, so that
the lifecycle itself knows nothing about Stripe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from paykube.api.providers import DEFAULT_STRIPE_API_VERSION
from paykube.api.types import RESERVED_METADATA_PREFIX, Phase
from paykube.errors import ErrorCode, ProviderError
from paykube.lifecycle import SessionSnapshot, timestamp
from paykube.providers.base import (
    AccountCredentials,
    AccountIdentity,
    CreateSession,
    ProviderPayloadInvalid,
    ProviderSession,
    WebhookEndpoint,
)
from paykube.providers.ratelimit import Priority, RateLimiter
from paykube.settings import SecretStr

CallObserver = Callable[[str, str, float], None]  # (operation, outcome, seconds)
WaitObserver = Callable[[str, float], None]  # (priority, seconds waited)

log = logging.getLogger(__name__)

# Stripe's id formats: an id from an answer or an event must match before it is stored or
# put into a URL path (where `../` or `?` would reach another endpoint with our key).
SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9]{1,250}")
PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,250}")
WEBHOOK_ENDPOINT_ID = re.compile(r"we_[A-Za-z0-9]{1,250}")
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")

HANDLED_EVENTS = {
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
}


# A PaymentIntent whose async payment failed goes back to `requires_payment_method` (or is
# canceled); the session itself stays complete/unpaid forever, so only the intent tells.
_INTENT_FAILED = frozenset({"requires_payment_method", "canceled"})


def session_phase(session: Mapping[str, Any]) -> Phase:
    """The phase of a session; with `payment_intent` expanded, async outcomes are seen too.

    Without the expansion (as in webhook events) complete/unpaid can only mean Processing:
    the async_payment_* event is then what ends it.
    """
    status = session.get("status")
    if not isinstance(status, str) or status not in SESSION_STATUSES:
        raise ProviderPayloadInvalid("session status", "is not one of open, complete, expired")
    paid = _optional_text(session, "payment_status", 64)
    if status == "complete":
        if paid in ("paid", "no_payment_required"):
            return Phase.PAID
        intent = session.get("payment_intent")
        intent_status = (_optional_text(intent, "status", 64, "payment_intent.")
                         if isinstance(intent, Mapping) else None)
        if intent_status in _INTENT_FAILED:
            return Phase.FAILED
        if intent_status == "succeeded":
            return Phase.PAID
        return Phase.PROCESSING
    if status == "expired":
        return Phase.EXPIRED
    return Phase.OPEN


def event_phase(event_type: str, session: Mapping[str, Any]) -> Phase | None:
    """The phase an event reports, or None for event types paykube does not handle."""
    match event_type:
        case "checkout.session.async_payment_succeeded":
            return Phase.PAID
        case "checkout.session.async_payment_failed":
            return Phase.FAILED
        case "checkout.session.completed" | "checkout.session.expired":
            return session_phase(session)
    return None


SESSION_STATUSES = frozenset({"open", "complete", "expired"})
# The status schema's bounds: an int64 amount, RFC 3339 timestamps up to year 9999.
_MAX_AMOUNT = 2**63 - 1
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


def snapshot(session: Mapping[str, Any]) -> SessionSnapshot:
    """The facts paykube keeps; ProviderPayloadInvalid when a field is not what Stripe sends.

    Types and bounds follow the CRD's status schema, so that whatever passes here can be
    written to the status without the API server refusing it.
    """
    if not isinstance(session, Mapping):
        raise ProviderPayloadInvalid("checkout session", "is not an object")
    session_id = _optional_text(session, "id", 255)
    if not session_id:
        raise ProviderPayloadInvalid("session id", "is missing")
    if not SESSION_ID.fullmatch(session_id):
        raise ProviderPayloadInvalid("session id", "is not a Checkout Session id (cs_...)")
    intent: Any = session.get("payment_intent")
    if isinstance(intent, Mapping):  # expanded
        intent_id = _optional_text(intent, "id", 255, "payment_intent.")
    else:
        intent_id = _optional_text(session, "payment_intent", 255)
    if intent_id is not None and not PAYMENT_INTENT_ID.fullmatch(intent_id):
        raise ProviderPayloadInvalid("payment_intent", "is not a PaymentIntent id (pi_...)")
    livemode = session.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise ProviderPayloadInvalid("livemode", "is not a boolean")
    expires = _optional_int(session, "expires_at", 0, _MAX_EPOCH)
    return SessionSnapshot(
        session_id=session_id,
        url=_optional_text(session, "url", 8192),
        payment_intent_id=intent_id,
        payment_status=_optional_text(session, "payment_status", 64),
        amount_total=_optional_int(session, "amount_total", 0, _MAX_AMOUNT),
        currency=_optional_text(session, "currency", 16),
        expires_at=(timestamp(dt.datetime.fromtimestamp(expires, dt.UTC))
                    if expires is not None else None),
        livemode=livemode,
        provider="stripe",
    )


def provider_session(session: Mapping[str, Any]) -> ProviderSession:
    """A session object as the adapter reports it; ProviderPayloadInvalid when unreadable."""
    facts = snapshot(session)  # checks that it is an object at all
    return ProviderSession(session_phase(session), facts)


def _optional_text(obj: Mapping[str, Any], name: str, max_length: int,
                   prefix: str = "") -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderPayloadInvalid(f"{prefix}{name}", "is not a string")
    if len(value) > max_length:
        raise ProviderPayloadInvalid(f"{prefix}{name}", f"is longer than {max_length}")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    # bool is an int to Python, and 1e20 a float to JSON: neither is what Stripe sends.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProviderPayloadInvalid(name, "is not an integer")
    if not low <= value <= high:
        raise ProviderPayloadInvalid(name, f"is outside {low}..{high}")
    return value


def create_params(request: CreateSession) -> dict[str, Any]:
    spec, ref = request.spec, request.ref
    if spec.line_items:
        items = [{"quantity": i.quantity,
                  "price_data": {"currency": spec.currency, "unit_amount": i.unit_amount,
                                 "product_data": {"name": i.name}}}
                 for i in spec.line_items]
    else:
        items = [{"quantity": 1,
                  "price_data": {"currency": spec.currency, "unit_amount": spec.amount,
                                 "product_data": {"name": spec.description or ref.name}}}]
    metadata = {k: v for k, v in spec.metadata.items()
                if not k.startswith(RESERVED_METADATA_PREFIX)}
    metadata |= {"paykube_namespace": ref.namespace, "paykube_name": ref.name,
                 "paykube_uid": ref.uid}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": items,
        "success_url": spec.success_url,
        "cancel_url": spec.cancel_url,
        "client_reference_id": ref.uid,
        "expires_at": int(request.expires_at.timestamp()),
        "metadata": metadata,
    }
    if spec.customer_email:
        params["customer_email"] = spec.customer_email
    return params


def encode_form(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested maps as a[b], lists as a[0]."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs += encode_form(value, name)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs += encode_form(item, f"{name}[{index}]")
                else:
                    pairs.append((f"{name}[{index}]", _scalar(item)))
        elif value is not None:
            pairs.append((name, _scalar(value)))
    return pairs


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error_from_response(response: httpx.Response) -> ProviderError:
    error = (_json_object(response) or {}).get("error")
    # A proxy's HTML page or an odd body still gives an error of the right kind.
    body: dict[str, Any] = {k: v for k, v in error.items() if isinstance(v, str)} if (
        isinstance(error, dict)) else {}
    status = response.status_code
    message = str(body.get("message") or f"Stripe answered HTTP {status}")
    if status == 429:
        code = ErrorCode.RATE_LIMITED
    elif status >= 500 or status == 409:  # 409: idempotency_key_in_use, Stripe says retry
        code = ErrorCode.PROVIDER_UNAVAILABLE
    elif status in (401, 403):
        code = ErrorCode.CREDENTIALS_INVALID
    else:
        code = ErrorCode.PROVIDER_REJECTED
    return ProviderError(
        message, code=code, provider_code=body.get("code") or body.get("type"),
        doc_url=body.get("doc_url"), param=body.get("param"), http_status=status,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        error_type=body.get("type"),
    )


# A longer wait would stall the caller; the reconciler's own requeue takes over instead.
MAX_RETRY_AFTER = 60.0


def retry_after_seconds(value: str | None,
                        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                        ) -> float | None:
    """`Retry-After` in seconds, from either of its forms (delay-seconds or an HTTP-date).

    None when absent or unreadable (the caller's own backoff applies); never negative and
    at most MAX_RETRY_AFTER.
    """
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # an HTTP-date is GMT by definition
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now()).total_seconds()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


RETRIEVE_QUERY = (("expand[]", "payment_intent"),)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return None
    return body if isinstance(body, dict) else None


class StripeProvider:
    name = "stripe"

    def __init__(
        self, *, api_base: str, limiter: RateLimiter, timeout: float = 20.0,
        attempts: int = 4, backoff_base: float = 0.5, backoff_cap: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_call: CallObserver | None = None, on_wait: WaitObserver | None = None,
    ) -> None:
        self._on_call = on_call or (lambda _op, _outcome, _s: None)
        self._on_wait = on_wait or (lambda _p, _s: None)
        self._http = httpx.AsyncClient(base_url=api_base, timeout=timeout, transport=transport)
        self._limiter = limiter
        self._attempts = attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap

    async def aclose(self) -> None:
        await self._http.aclose()

    def valid_session_id(self, session_id: str) -> bool:
        return SESSION_ID.fullmatch(session_id) is not None

    async def create_session(self, request: CreateSession,
                             account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        body = await self._call(
            "create", "POST", "/v1/checkout/sessions", account, Priority.CREATE,
            form=encode_form(create_params(request)), idempotency_key=request.idempotency_key,
        )
        return self._session(body, account)

    async def get_session(self, session_id: str,
                          account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        # The expanded intent is the only way a poll can see an async payment fail.
        body = await self._call("get", "GET", f"/v1/checkout/sessions/{self._id(session_id)}",
                                account, Priority.POLL, query=RETRIEVE_QUERY)
        return self._session(body, account)

    async def expire_session(self, session_id: str,
                             account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        try:
            body = await self._call(
                "expire", "POST", f"/v1/checkout/sessions/{self._id(session_id)}/expire",
                account, Priority.CANCEL, form=[],
                idempotency_key=f"paykube:{session_id}:expire",
            )
        except ProviderError as exc:
            # Stripe refuses to expire a session that is no longer open: report how it ended.
            if exc.http_status == 400 and exc.code is ErrorCode.PROVIDER_REJECTED:
                return await self.get_session(session_id, account)
            raise
        return self._session(body, account)

    async def identify(self, account: AccountCredentials) -> AccountIdentity:
        """`GET /v1/account` names the account; the mode comes from the balance, the
        cheapest object that carries `livemode` (Account itself does not)."""
        body = await self._call("account", "GET", "/v1/account", account, Priority.POLL)
        account_id = body.get("id")
        if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
            raise ProviderPayloadInvalid("account id", "is not an account id (acct_...)")
        balance = await self._call("balance", "GET", "/v1/balance", account, Priority.POLL)
        livemode = balance.get("livemode")
        if not isinstance(livemode, bool):
            raise ProviderPayloadInvalid("balance livemode", "is not a boolean")
        return AccountIdentity(account_id, livemode)

    async def ensure_webhook_endpoint(self, account: AccountCredentials, url: str,
                                      ) -> WebhookEndpoint:
        listed = await self._call("webhook_endpoints", "GET", "/v1/webhook_endpoints",
                                  account, Priority.CREATE, query=(("limit", "100"),))
        for item in listed.get("data") or ():
            if isinstance(item, dict) and item.get("url") == url:
                return WebhookEndpoint(self._endpoint_id(item), url)
        form = encode_form({"url": url, "enabled_events": sorted(HANDLED_EVENTS),
                            "api_version": account.api_version or DEFAULT_STRIPE_API_VERSION,
                            "description": "paykube", "connect": bool(account.connect_account)})
        # The connect flag says whose events the endpoint receives; the endpoint itself
        # belongs to the platform account, so no Stripe-Account header on this call.
        platform = AccountCredentials(account.api_key, account.api_version)
        created = await self._call("webhook_endpoint_create", "POST", "/v1/webhook_endpoints",
                                   platform, Priority.CREATE, form=form,
                                   idempotency_key=f"paykube:{url}:webhook_endpoint")
        secret = created.get("secret")
        if not isinstance(secret, str) or not secret.startswith("whsec_"):
            raise ProviderPayloadInvalid("webhook endpoint secret", "is missing")
        return WebhookEndpoint(self._endpoint_id(created), url, SecretStr(secret))

    async def delete_webhook_endpoint(self, account: AccountCredentials,
                                      endpoint_id: str) -> None:
        if not WEBHOOK_ENDPOINT_ID.fullmatch(endpoint_id):
            raise ProviderPayloadInvalid("webhook endpoint id", "is not an endpoint id (we_...)")
        platform = AccountCredentials(account.api_key, account.api_version)
        try:
            await self._call("webhook_endpoint_delete", "DELETE",
                             f"/v1/webhook_endpoints/{quote(endpoint_id, safe='')}", platform,
                             Priority.CANCEL)
        except ProviderError as exc:
            if exc.http_status != 404:  # already gone: what we wanted
                raise

    @staticmethod
    def _endpoint_id(item: Mapping[str, Any]) -> str:
        endpoint_id = item.get("id")
        if not isinstance(endpoint_id, str) or not WEBHOOK_ENDPOINT_ID.fullmatch(endpoint_id):
            raise ProviderPayloadInvalid("webhook endpoint id", "is not an endpoint id (we_...)")
        return endpoint_id

    @staticmethod
    def _id(session_id: str) -> str:
        """A session id for a URL path: checked against Stripe's format, then quoted."""
        if not SESSION_ID.fullmatch(session_id):
            raise ProviderError("refusing a session id that is not a Checkout Session id",
                                code=ErrorCode.PAYLOAD_INVALID, param="session id")
        return quote(session_id, safe="")

    @staticmethod
    def _session(body: Mapping[str, Any], account: AccountCredentials) -> ProviderSession:
        session = provider_session(body)
        if account.connect_account:
            snap = dataclasses.replace(session.snapshot, account=account.connect_account)
            session = ProviderSession(session.phase, snap)
        return session

    async def _call(
        self, operation: str, method: str, path: str, account: AccountCredentials,
        priority: Priority, *,
        form: list[tuple[str, str]] | None = None, idempotency_key: str | None = None,
        query: tuple[tuple[str, str], ...] | None = None,
    ) -> dict[str, Any]:
        api_key = account.api_key
        if not api_key:
            raise ProviderError("no Stripe API key configured", code=ErrorCode.CREDENTIALS_MISSING)
        headers = {"Authorization": f"Bearer {api_key.get()}",
                   "Stripe-Version": account.api_version or DEFAULT_STRIPE_API_VERSION}
        if account.connect_account:
            headers["Stripe-Account"] = account.connect_account
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = None
        if form is not None:
            content = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        last: ProviderError | None = None
        for attempt in range(self._attempts):
            self._on_wait(priority.name.lower(), await self._limiter.acquire(priority))
            started = time.monotonic()
            try:
                response = await self._http.request(method, path, headers=headers,
                                                    content=content, params=query)
            except httpx.TransportError as exc:
                last = ProviderError(f"Stripe unreachable: {type(exc).__name__}",
                                     code=ErrorCode.PROVIDER_UNAVAILABLE)
            else:
                if response.status_code < 400:
                    result = _json_object(response)
                    if result is not None:
                        self._on_call(operation, "ok", time.monotonic() - started)
                        return result
                    # A cut or mangled answer: whether the call took effect is unknown, so
                    # retry (creates and expiries carry idempotency keys; reads are safe).
                    last = ProviderError(
                        f"Stripe answered HTTP {response.status_code} with a body that is not "
                        "a JSON object", code=ErrorCode.PROVIDER_UNAVAILABLE,
                        http_status=response.status_code)
                else:
                    last = error_from_response(response)
            self._on_call(operation, last.code.value, time.monotonic() - started)
            if not last.retryable:
                raise last
            if attempt + 1 < self._attempts:
                delay = min(self._backoff_cap, self._backoff_base * 2**attempt)
                delay = max(delay * random.uniform(0.5, 1.0), last.retry_after or 0.0)
                log.info("stripe call retried", extra={"path": path, "code": last.code.value,
                                                       "delay": round(delay, 2)})
                await asyncio.sleep(delay)
        assert last is not None
        raise last


def _credentials(account: AccountCredentials | SecretStr) -> AccountCredentials:
    """A bare key means the key's own account at the default API version."""
    return account if isinstance(account, AccountCredentials) else AccountCredentials(account)
