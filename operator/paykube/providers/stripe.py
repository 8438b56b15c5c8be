"""Stripe Checkout as a PaymentProvider, through the official `stripe` SDK (StripeClient,
async, on paykube's httpx client with an injectable transport).

Also owns the mapping from Stripe sessions and events to lifecycle observations, so that
the lifecycle itself knows nothing about Stripe.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import email.utils
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import certifi
import httpx
import stripe

from paykube.api.providers import DEFAULT_STRIPE_API_VERSION
from paykube.api.types import RESERVED_METADATA_PREFIX, ObjectRef, Phase, RefundPhase
from paykube.errors import ErrorCode, ProviderError
from paykube.lifecycle import SessionSnapshot, timestamp
from paykube.providers.base import (
    AccountCredentials,
    AccountIdentity,
    CreateRefund,
    CreateSession,
    ProviderPayloadInvalid,
    ProviderSession,
    RefundSnapshot,
    WebhookEndpoint,
    optional_int,
    optional_text,
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
# Refunds are `re_`; Stripe gives refunds of some payment methods `pyr_` ids.
REFUND_ID = re.compile(r"(re|pyr)_[A-Za-z0-9]{1,250}")
CHARGE_ID = re.compile(r"(ch|py)_[A-Za-z0-9]{1,250}")

HANDLED_EVENTS = {
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
}
# The refund events (docs/refunds.md): the webhook binds refund.* to a PaymentRefund by
# the refund's metadata, charge.refunded to a PaymentSession by the charge's.
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed",
                           "charge.refunded"})
# list_refunds reads at most this many refunds of one payment (Stripe's page maximum).
REFUND_PAGE_SIZE = 100
MAX_REFUND_PAGES = 10
# What paykube's webhook endpoints subscribe to.
SUBSCRIBED_EVENTS = frozenset(HANDLED_EVENTS) | REFUND_EVENTS


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
    paid = optional_text(session, "payment_status", 64)
    if status == "complete":
        if paid in ("paid", "no_payment_required"):
            return Phase.PAID
        intent = session.get("payment_intent")
        intent_status = (optional_text(intent, "status", 64, "payment_intent.")
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
    session_id = optional_text(session, "id", 255)
    if not session_id:
        raise ProviderPayloadInvalid("session id", "is missing")
    if not SESSION_ID.fullmatch(session_id):
        raise ProviderPayloadInvalid("session id", "is not a Checkout Session id (cs_...)")
    intent: Any = session.get("payment_intent")
    if isinstance(intent, Mapping):  # expanded
        intent_id = optional_text(intent, "id", 255, "payment_intent.")
    else:
        intent_id = optional_text(session, "payment_intent", 255)
    if intent_id is not None and not PAYMENT_INTENT_ID.fullmatch(intent_id):
        raise ProviderPayloadInvalid("payment_intent", "is not a PaymentIntent id (pi_...)")
    livemode = session.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise ProviderPayloadInvalid("livemode", "is not a boolean")
    expires = optional_int(session, "expires_at", 0, _MAX_EPOCH)
    return SessionSnapshot(
        session_id=session_id,
        url=optional_text(session, "url", 8192),
        payment_intent_id=intent_id,
        payment_status=optional_text(session, "payment_status", 64),
        amount_total=optional_int(session, "amount_total", 0, _MAX_AMOUNT),
        currency=optional_text(session, "currency", 16),
        expires_at=(timestamp(dt.datetime.fromtimestamp(expires, dt.UTC))
                    if expires is not None else None),
        livemode=livemode,
        provider="stripe",
    )


def provider_session(session: Mapping[str, Any]) -> ProviderSession:
    """A session object as the adapter reports it; ProviderPayloadInvalid when unreadable."""
    facts = snapshot(session)  # checks that it is an object at all
    return ProviderSession(session_phase(session), facts)


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
    metadata = _metadata(spec.metadata, ref)
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": items,
        "success_url": spec.success_url,
        "cancel_url": spec.cancel_url,
        "client_reference_id": ref.uid,
        "expires_at": int(request.expires_at.timestamp()),
        "metadata": metadata,
        # The PaymentIntent's metadata goes on to its charge, so that `charge.refunded`
        # (whose object is the charge) names the session as the session's events do.
        "payment_intent_data": {"metadata": metadata},
    }
    if spec.customer_email:
        params["customer_email"] = spec.customer_email
    return params


def _metadata(own: Mapping[str, str] | None, ref: ObjectRef) -> dict[str, str]:
    """The user's metadata without paykube's reserved keys, plus paykube's own keys naming
    the object (webhooks find their object by them)."""
    metadata = {k: v for k, v in (own or {}).items()
                if not k.startswith(RESERVED_METADATA_PREFIX)}
    return metadata | {"paykube_namespace": ref.namespace, "paykube_name": ref.name,
                       "paykube_uid": ref.uid}


REFUND_STATUSES: Mapping[str, RefundPhase] = {
    "pending": RefundPhase.PENDING,
    "requires_action": RefundPhase.REQUIRES_ACTION,
    "succeeded": RefundPhase.SUCCEEDED,
    "failed": RefundPhase.FAILED,
    "canceled": RefundPhase.CANCELED,
}


def refund_params(request: CreateRefund) -> dict[str, Any]:
    """`POST /v1/refunds` for one PaymentRefund: on the session's PaymentIntent, with the
    refund's object in its metadata and the session's name (for people reading Stripe)."""
    metadata = _metadata(request.metadata, request.ref) | {
        "paykube_session": request.session.name}
    params: dict[str, Any] = {"payment_intent": request.payment_id, "amount": request.amount,
                              "metadata": metadata}
    if request.reason:
        params["reason"] = request.reason
    return params


def refund_phase(refund: Mapping[str, Any]) -> RefundPhase:
    status = refund.get("status")
    if not isinstance(status, str) or status not in REFUND_STATUSES:
        raise ProviderPayloadInvalid(
            "refund status", f"is not one of {', '.join(REFUND_STATUSES)}")
    return REFUND_STATUSES[status]


def _intent_id(obj: Mapping[str, Any]) -> str | None:
    """`payment_intent` as an id, or expanded; checked against the id format."""
    intent: Any = obj.get("payment_intent")
    if isinstance(intent, Mapping):
        intent_id = optional_text(intent, "id", 255, "payment_intent.")
    else:
        intent_id = optional_text(obj, "payment_intent", 255)
    if intent_id is not None and not PAYMENT_INTENT_ID.fullmatch(intent_id):
        raise ProviderPayloadInvalid("payment_intent", "is not a PaymentIntent id (pi_...)")
    return intent_id


def _livemode(obj: Mapping[str, Any]) -> bool | None:
    livemode = obj.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise ProviderPayloadInvalid("livemode", "is not a boolean")
    return livemode


def _paykube_metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    """paykube's own metadata keys of an object (strings within the status bounds); the
    user's keys are not paykube's to judge."""
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ProviderPayloadInvalid("metadata", "is not an object")
    found: dict[str, str] = {}
    for key in ("paykube_namespace", "paykube_name", "paykube_uid", "paykube_session"):
        value = optional_text(metadata, key, 253, "metadata.")
        if value is not None:
            found[key] = value
    return found


def refund_snapshot(refund: Mapping[str, Any]) -> RefundSnapshot:
    """The facts paykube keeps of a refund; ProviderPayloadInvalid when a field is not what
    Stripe sends (bounds as in the PaymentRefund's status schema)."""
    if not isinstance(refund, Mapping):
        raise ProviderPayloadInvalid("refund", "is not an object")
    refund_id = optional_text(refund, "id", 255)
    if not refund_id:
        raise ProviderPayloadInvalid("refund id", "is missing")
    if not REFUND_ID.fullmatch(refund_id):
        raise ProviderPayloadInvalid("refund id", "is not a refund id (re_... or pyr_...)")
    amount = optional_int(refund, "amount", 0, _MAX_AMOUNT)
    if amount is None:
        raise ProviderPayloadInvalid("amount", "is missing")
    return RefundSnapshot(
        refund_id=refund_id, phase=refund_phase(refund), amount=amount,
        currency=optional_text(refund, "currency", 16), payment_id=_intent_id(refund),
        provider_status=optional_text(refund, "status", 64),
        failure_reason=optional_text(refund, "failure_reason", 255),
        refund_uid=_paykube_metadata(refund).get("paykube_uid"), livemode=_livemode(refund),
    )


@dataclasses.dataclass(frozen=True)
class ChargeRefundFacts:
    """What a `charge.refunded` event says: how much of the charge is refunded (pending and
    succeeded refunds, paykube's or the Dashboard's), and paykube's metadata keys the
    charge carries from its PaymentIntent (the webhook binds them to a PaymentSession as it
    does a session's; absent for payments paykube did not make)."""

    charge_id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    refunded: bool
    currency: str | None
    livemode: bool | None
    metadata: Mapping[str, str]


def charge_refunded_facts(charge: Mapping[str, Any]) -> ChargeRefundFacts:
    if not isinstance(charge, Mapping):
        raise ProviderPayloadInvalid("charge", "is not an object")
    charge_id = optional_text(charge, "id", 255)
    if not charge_id or not CHARGE_ID.fullmatch(charge_id):
        raise ProviderPayloadInvalid("charge id", "is not a charge id (ch_... or py_...)")
    amount = optional_int(charge, "amount", 0, _MAX_AMOUNT)
    refunded_amount = optional_int(charge, "amount_refunded", 0, _MAX_AMOUNT)
    if amount is None or refunded_amount is None:
        raise ProviderPayloadInvalid("amount or amount_refunded", "is missing")
    if refunded_amount > amount:
        raise ProviderPayloadInvalid("amount_refunded", "is more than the charge's amount")
    refunded = charge.get("refunded", refunded_amount == amount)
    if not isinstance(refunded, bool):
        raise ProviderPayloadInvalid("refunded", "is not a boolean")
    return ChargeRefundFacts(
        charge_id=charge_id, payment_intent_id=_intent_id(charge), amount=amount,
        amount_refunded=refunded_amount, refunded=refunded,
        currency=optional_text(charge, "currency", 16), livemode=_livemode(charge),
        metadata=_paykube_metadata(charge),
    )


@dataclasses.dataclass
class _Answer:
    """The HTTP answer behind one SDK call, as the transport saw it."""

    status: int | None = None
    headers: Mapping[str, str] | None = None


# Set by _call around each SDK call, filled by the transport (the SDK awaits it in the same
# task, so concurrent calls each see their own). Needed because the SDK drops the headers
# of an error whose body it cannot read, and does not say the status of a 2xx that is JSON
# but not an object.
_ANSWER: contextvars.ContextVar[_Answer | None] = contextvars.ContextVar(
    "paykube_stripe_answer", default=None)


def error_from_stripe(exc: stripe.StripeError, seen: _Answer | None = None) -> ProviderError:
    """The SDK's error as paykube's: the code follows the HTTP status (as Stripe documents
    which statuses are worth a retry), Stripe's own fields are kept as they came.

    `seen` is the answer the transport received, for what the SDK's error leaves out."""
    if isinstance(exc, stripe.APIConnectionError) or exc.http_status is None:
        return ProviderError(exc.user_message or "Stripe unreachable",
                             code=ErrorCode.PROVIDER_UNAVAILABLE)
    body = exc.json_body
    error = body.get("error") if isinstance(body, dict) else None
    # A proxy's HTML page or an odd body still gives an error of the right kind.
    fields: dict[str, str] = ({k: v for k, v in error.items() if isinstance(v, str)}
                              if isinstance(error, dict) else {})
    retry_after = _header(exc.headers, "Retry-After") or _header(
        seen.headers if seen else None, "Retry-After")
    return error_for_status(exc.http_status, fields, retry_after)


def error_for_status(status: int, fields: Mapping[str, str],
                     retry_after: str | None) -> ProviderError:
    """paykube's error for a Stripe answer of this HTTP status and these error fields."""
    if status < 400:
        # A cut or mangled answer: whether the call took effect is unknown, so it is worth
        # a retry (creates and expiries carry idempotency keys; reads are safe).
        return ProviderError(
            f"Stripe answered HTTP {status} with a body that is not a JSON object",
            code=ErrorCode.PROVIDER_UNAVAILABLE, http_status=status)
    message = fields.get("message") or f"Stripe answered HTTP {status}"
    if status == 429:
        code = ErrorCode.RATE_LIMITED
    elif status >= 500 or status == 409:  # 409: idempotency_key_in_use, Stripe says retry
        code = ErrorCode.PROVIDER_UNAVAILABLE
    elif status in (401, 403):
        code = ErrorCode.CREDENTIALS_INVALID
    else:
        code = ErrorCode.PROVIDER_REJECTED
    return ProviderError(
        message, code=code, provider_code=fields.get("code") or fields.get("type"),
        doc_url=fields.get("doc_url"), param=fields.get("param"), http_status=status,
        retry_after=retry_after_seconds(retry_after), error_type=fields.get("type"),
    )


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by name in any case (the SDK passes httpx's headers on, or a plain dict)."""
    if not headers:
        return None
    if isinstance(headers, httpx.Headers):
        value: str | None = headers.get(name)
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


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


class _Transport(stripe.HTTPClient):
    """What both of paykube's transports do around a request: a network failure is the
    SDK's APIConnectionError, the answer is noted for `_call` (see _ANSWER), and the body
    handed to the SDK is valid UTF-8. A subclass sends, and names its network errors."""

    _network_errors: tuple[type[BaseException], ...] = ()

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
                    post_data: Any) -> tuple[bytes, int, Mapping[str, str]]:
        raise NotImplementedError

    async def request_async(self, method: str, url: str, headers: Mapping[str, str] | None,
                            post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            content, status, answer_headers = await self._send(method, url, headers, post_data)
        except self._network_errors as exc:
            # should_retry stays False: paykube's own loop decides (max_network_retries=0).
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]  # SDK untyped
                f"Stripe unreachable: {type(exc).__name__}") from exc
        if (seen := _ANSWER.get()) is not None:
            seen.status, seen.headers = status, answer_headers
        return _utf8(content), status, answer_headers

    def close(self) -> None:  # the async client or session is closed by close_async
        pass


class _AIOHTTP(_Transport):
    """The SDK's transport over aiohttp, as paykube's own API-server client: under the
    operator's profile the SDK's httpx transport was a quarter of the operator's CPU
    (httpcore checks every pooled connection on each request). The session is built on
    the first call, inside the event loop; CAs from certifi, as httpx had them."""

    name = "aiohttp"
    _network_errors = (aiohttp.ClientError, TimeoutError)

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
                    post_data: Any) -> tuple[bytes, int, Mapping[str, str]]:
        if self._session is None:  # (raises none of the _network_errors)
            tls = ssl.create_default_context(cafile=certifi.where())
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=tls),
                auto_decompress=True)
        elif self._session.closed:  # a call still running while the provider shuts down
            raise aiohttp.ClientConnectionError("the Stripe client is closed")
        data = post_data.encode() if isinstance(post_data, str) else post_data
        async with self._session.request(method, url, headers=dict(headers or {}),
                                         data=data or None) as response:
            return await response.read(), response.status, response.headers

    async def close_async(self) -> None:
        if self._session is not None:
            await self._session.close()


class _HTTPX(_Transport):
    """The SDK's transport over an httpx client with a transport that tests inject (to
    record or answer requests). The SDK's HTTPXClient builds its own AsyncClient and posts
    the form as `data=` (deprecated in httpx for a str)."""

    name = "httpx"
    _network_errors = (httpx.TransportError,)

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__()
        self._http = http

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
                    post_data: Any) -> tuple[bytes, int, Mapping[str, str]]:
        response = await self._http.request(method, url, headers=headers,
                                            content=post_data or None)
        return response.content, response.status_code, response.headers

    async def close_async(self) -> None:
        await self._http.aclose()


Send = Callable[["stripe.RequestOptions"], Awaitable[object]]


def _utf8(content: bytes) -> bytes:
    """The body as valid UTF-8. The SDK logs every body through a str decode that raises on
    anything else (stripe 16: _util.logfmt), which would escape as a UnicodeDecodeError;
    with the bad bytes replaced, such a body is simply not JSON, as it was not before."""
    if content.isascii():
        return content
    try:
        content.decode()
    except UnicodeDecodeError:
        return content.decode(errors="replace").encode()
    return content


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
        self._http: _AIOHTTP | _HTTPX = (
            _AIOHTTP(timeout) if transport is None
            else _HTTPX(httpx.AsyncClient(timeout=timeout, transport=transport)))
        # The key, version and account go with each call (one client serves all accounts);
        # the client's own key is never used. No SDK retries: paykube's loop below is the
        # only one, under the rate limiter.
        self._client = stripe.StripeClient(
            "", stripe_version=DEFAULT_STRIPE_API_VERSION, max_network_retries=0,
            base_addresses={"api": api_base.rstrip("/")}, http_client=self._http)
        self._limiter = limiter
        self._attempts = attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap

    async def aclose(self) -> None:
        await self._http.close_async()

    def valid_session_id(self, session_id: str) -> bool:
        return SESSION_ID.fullmatch(session_id) is not None

    async def create_session(self, request: CreateSession,
                             account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        sessions = self._client.v1.checkout.sessions
        params = _params(create_params(request))
        body = await self._call("create", account, Priority.CREATE,
                                lambda o: sessions.create_async(params, o),
                                idempotency_key=request.idempotency_key)
        return self._session(body, account)

    async def get_session(self, session_id: str,
                          account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        checked = self._id(session_id)
        sessions = self._client.v1.checkout.sessions
        # The expanded intent is the only way a poll can see an async payment fail.
        body = await self._call(
            "get", account, Priority.POLL,
            lambda o: sessions.retrieve_async(checked, {"expand": ["payment_intent"]}, o))
        return self._session(body, account)

    async def expire_session(self, session_id: str,
                             account: AccountCredentials | SecretStr) -> ProviderSession:
        account = _credentials(account)
        checked = self._id(session_id)
        sessions = self._client.v1.checkout.sessions
        try:
            body = await self._call("expire", account, Priority.CANCEL,
                                    lambda o: sessions.expire_async(checked, None, o),
                                    idempotency_key=f"paykube:{checked}:expire")
        except ProviderError as exc:
            # Stripe refuses to expire a session that is no longer open: report how it ended.
            if exc.http_status == 400 and exc.code is ErrorCode.PROVIDER_REJECTED:
                return await self.get_session(session_id, account)
            raise
        return self._session(body, account)

    async def identify(self, account: AccountCredentials) -> AccountIdentity:
        """`GET /v1/account` names the account; the mode comes from the balance, the
        cheapest object that carries `livemode` (Account itself does not)."""
        v1 = self._client.v1
        body = await self._call("account", account, Priority.POLL,
                                lambda o: v1.accounts.retrieve_current_async(None, o))
        account_id = body.get("id")
        if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
            raise ProviderPayloadInvalid("account id", "is not an account id (acct_...)")
        balance = await self._call("balance", account, Priority.POLL,
                                   lambda o: v1.balance.retrieve_async(None, o))
        livemode = balance.get("livemode")
        if not isinstance(livemode, bool):
            raise ProviderPayloadInvalid("balance livemode", "is not a boolean")
        return AccountIdentity(account_id, livemode)

    async def ensure_webhook_endpoint(self, account: AccountCredentials, url: str,
                                      ) -> WebhookEndpoint:
        endpoints = self._client.v1.webhook_endpoints
        listed = await self._call("webhook_endpoints", account, Priority.CREATE,
                                  lambda o: endpoints.list_async({"limit": 100}, o))
        for item in listed.get("data") or ():
            if isinstance(item, dict) and item.get("url") == url:
                endpoint_id = self._endpoint_id(item)
                await self._subscribe(account, endpoint_id, item.get("enabled_events"))
                return WebhookEndpoint(endpoint_id, url)
        params = _params({"url": url, "enabled_events": sorted(SUBSCRIBED_EVENTS),
                          "api_version": account.api_version or DEFAULT_STRIPE_API_VERSION,
                          "description": "paykube", "connect": bool(account.connect_account)})
        # The connect flag says whose events the endpoint receives; the endpoint itself
        # belongs to the platform account, so no Stripe-Account header on this call.
        platform = AccountCredentials(account.api_key, account.api_version)
        created = await self._call("webhook_endpoint_create", platform, Priority.CREATE,
                                   lambda o: endpoints.create_async(params, o),
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
        endpoints = self._client.v1.webhook_endpoints
        try:
            await self._call("webhook_endpoint_delete", platform, Priority.CANCEL,
                             lambda o: endpoints.delete_async(endpoint_id, None, o))
        except ProviderError as exc:
            if exc.http_status != 404:  # already gone: what we wanted
                raise

    async def _subscribe(self, account: AccountCredentials, endpoint_id: str,
                         enabled: object) -> None:
        """An endpoint registered before paykube handled refunds gets the refund events
        added (its other events stay)."""
        events = ({e for e in enabled if isinstance(e, str)} if isinstance(enabled, list)
                  else set())
        if "*" in events or events >= SUBSCRIBED_EVENTS:
            return
        params = _params({"enabled_events": sorted(events | SUBSCRIBED_EVENTS)})
        platform = AccountCredentials(account.api_key, account.api_version)
        endpoints = self._client.v1.webhook_endpoints
        await self._call("webhook_endpoint_update", platform, Priority.CREATE,
                         lambda o: endpoints.update_async(endpoint_id, params, o))

    # --- refunds (docs/refunds.md) -------------------------------------------------------

    def valid_refund_id(self, refund_id: str) -> bool:
        return REFUND_ID.fullmatch(refund_id) is not None

    async def create_refund(self, request: CreateRefund,
                            account: AccountCredentials | SecretStr) -> RefundSnapshot:
        """Once per PaymentRefund: the idempotency key is the refund's uid, so a create
        repeated after a crash gets the same refund back (Stripe keeps keys 24 hours)."""
        account = _credentials(account)
        if not PAYMENT_INTENT_ID.fullmatch(request.payment_id):
            raise ProviderError("refusing to refund a payment that is not a PaymentIntent id",
                                code=ErrorCode.PAYLOAD_INVALID, param="payment_intent")
        refunds = self._client.v1.refunds
        params = _params(refund_params(request))
        body = await self._call("refund_create", account, Priority.CREATE,
                                lambda o: refunds.create_async(params, o),
                                idempotency_key=request.idempotency_key)
        refund = refund_snapshot(body)
        if refund.payment_id not in (None, request.payment_id):
            raise ProviderPayloadInvalid("refund payment_intent", "is not the one refunded")
        return refund

    async def get_refund(self, refund_id: str,
                         account: AccountCredentials | SecretStr) -> RefundSnapshot:
        account = _credentials(account)
        if not REFUND_ID.fullmatch(refund_id):
            raise ProviderError("refusing a refund id that is not a Stripe refund id",
                                code=ErrorCode.PAYLOAD_INVALID, param="refund id")
        refunds = self._client.v1.refunds
        body = await self._call("refund_get", account, Priority.POLL,
                                lambda o: refunds.retrieve_async(refund_id, None, o))
        refund = refund_snapshot(body)
        if refund.refund_id != refund_id:
            raise ProviderPayloadInvalid("refund id", "is not the one asked for")
        return refund

    async def list_refunds(self, payment_id: str, account: AccountCredentials | SecretStr,
                           ) -> tuple[RefundSnapshot, ...]:
        """Every refund of the PaymentIntent, page by page to the end. More than
        MAX_REFUND_PAGES pages is refused rather than cut: a partial list would understate
        what is refunded."""
        account = _credentials(account)
        if not PAYMENT_INTENT_ID.fullmatch(payment_id):
            raise ProviderError("refusing a payment that is not a PaymentIntent id",
                                code=ErrorCode.PAYLOAD_INVALID, param="payment_intent")
        found: dict[str, RefundSnapshot] = {}
        query: dict[str, Any] = {"payment_intent": payment_id, "limit": REFUND_PAGE_SIZE}
        for _ in range(MAX_REFUND_PAGES):
            body = await self._refund_page(account, query)
            data = body.get("data")
            if not isinstance(data, list):
                raise ProviderPayloadInvalid("refund list data", "is not a list")
            for item in data:
                refund = refund_snapshot(item)
                if refund.payment_id not in (None, payment_id):
                    raise ProviderPayloadInvalid("refund payment_intent",
                                                 "is not the PaymentIntent listed")
                found.setdefault(refund.refund_id, refund)
            if body.get("has_more") is not True:
                return tuple(found.values())
            if not data:
                raise ProviderPayloadInvalid("refund list", "has more but an empty page")
            query = query | {"starting_after": refund_snapshot(data[-1]).refund_id}
        raise ProviderPayloadInvalid(
            "refund list", f"has more than {MAX_REFUND_PAGES * REFUND_PAGE_SIZE} refunds")

    async def _refund_page(self, account: AccountCredentials,
                           query: Mapping[str, Any]) -> dict[str, Any]:
        refunds = self._client.v1.refunds
        params = _params(query)
        return await self._call("refund_list", account, Priority.POLL,
                                lambda o: refunds.list_async(params, o))

    @staticmethod
    def _endpoint_id(item: Mapping[str, Any]) -> str:
        endpoint_id = item.get("id")
        if not isinstance(endpoint_id, str) or not WEBHOOK_ENDPOINT_ID.fullmatch(endpoint_id):
            raise ProviderPayloadInvalid("webhook endpoint id", "is not an endpoint id (we_...)")
        return endpoint_id

    @staticmethod
    def _id(session_id: str) -> str:
        """A session id for a URL path, checked against Stripe's format: the SDK quotes it,
        but `cs_test_x/expire` or an id of another object would still reach Stripe."""
        if not SESSION_ID.fullmatch(session_id):
            raise ProviderError("refusing a session id that is not a Checkout Session id",
                                code=ErrorCode.PAYLOAD_INVALID, param="session id")
        return session_id

    @staticmethod
    def _session(body: Mapping[str, Any], account: AccountCredentials) -> ProviderSession:
        session = provider_session(body)
        if account.connect_account:
            snap = dataclasses.replace(session.snapshot, account=account.connect_account)
            session = ProviderSession(session.phase, snap)
        return session

    async def _call(self, operation: str, account: AccountCredentials, priority: Priority,
                    send: Send, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """`send(options)` through the limiter, with paykube's retries; the answer as a
        plain dict, for paykube's own validation (never the SDK's typed objects)."""
        api_key = account.api_key
        if not api_key:
            raise ProviderError("no Stripe API key configured", code=ErrorCode.CREDENTIALS_MISSING)
        options: stripe.RequestOptions = {
            "api_key": api_key.get(),
            "stripe_version": account.api_version or DEFAULT_STRIPE_API_VERSION,
            "stripe_account": account.connect_account,
            "idempotency_key": idempotency_key,
            "max_network_retries": 0,
        }
        last: ProviderError | None = None
        for attempt in range(self._attempts):
            self._on_wait(priority.name.lower(), await self._limiter.acquire(priority))
            started = time.monotonic()
            seen = _Answer()
            token = _ANSWER.set(seen)
            try:
                answer = await send(options)
            except stripe.StripeError as exc:
                last = error_from_stripe(exc, seen)
            except (AttributeError, KeyError, TypeError, ValueError):
                # stripe 16 itself fails on some odd bodies while reading them (a 400 of
                # `{"error": "text"}` is an AttributeError in its error dispatch).
                if seen.status is None:
                    raise  # not an answer the SDK misread: a fault of ours, let it show
                last = error_for_status(seen.status, {}, _header(seen.headers, "Retry-After"))
            else:
                if isinstance(answer, stripe.StripeObject):
                    self._on_call(operation, "ok", time.monotonic() - started)
                    return answer.to_dict()
                # JSON, but a list or a scalar: as unusable as a cut body.
                last = ProviderError(
                    f"Stripe answered HTTP {seen.status} with a body that is not a JSON object",
                    code=ErrorCode.PROVIDER_UNAVAILABLE, http_status=seen.status)
            finally:
                _ANSWER.reset(token)
            self._on_call(operation, last.code.value, time.monotonic() - started)
            if not last.retryable:
                raise last
            if attempt + 1 < self._attempts:
                delay = min(self._backoff_cap, self._backoff_base * 2**attempt)
                delay = max(delay * random.uniform(0.5, 1.0), last.retry_after or 0.0)
                log.info("stripe call retried", extra={
                    "operation": operation, "code": last.code.value, "delay": round(delay, 2)})
                await asyncio.sleep(delay)
        assert last is not None
        raise last


def _params(params: Mapping[str, Any]) -> Any:
    """paykube's own request body for the SDK. Typed as Any on purpose: the SDK's TypedDicts
    follow its pinned API version (an `api_version` Literal, say), while paykube sends the
    version each account is pinned to."""
    return params


def _credentials(account: AccountCredentials | SecretStr) -> AccountCredentials:
    """A bare key means the key's own account at the default API version."""
    return account if isinstance(account, AccountCredentials) else AccountCredentials(account)
