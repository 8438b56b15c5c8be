"""Razorpay Payment Links as a PaymentProvider, over plain HTTPS (httpx, injectable transport).

Also owns the mapping from links and their webhook events to lifecycle observations.
What differs from Stripe, and how paykube covers it:

- No idempotency key: a create carries `reference_id` = the object's uid, which Razorpay
  keeps unique per account. A retried create (after a crash, a 5xx or a cut answer) is
  refused as a duplicate, and the existing link is then found by its reference.
- No expire: cancelling is the only way to end a link on request (`spec.cancel`, deletion);
  Razorpay cancels only a `created` link, so a refused cancel reports how the link is now.
- No API call tells a key's account or mode: the account id is declared on the provider
  (`spec.accountId`), and the mode is the one Razorpay gives the key id itself
  (`rzp_test_`/`rzp_live_`), read only after a real call accepted the key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from paykube.api.types import RESERVED_METADATA_PREFIX, PaymentSessionSpec, Phase, RefundPhase
from paykube.errors import CredentialsError, ErrorCode, ProviderError
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
from paykube.providers.stripe import retry_after_seconds

CallObserver = Callable[[str, str, float], None]  # (operation, outcome, seconds)
WaitObserver = Callable[[str, float], None]  # (priority, seconds waited)

log = logging.getLogger(__name__)
PROVIDER = "razorpay"
DEFAULT_API_BASE = "https://api.razorpay.com"

# Razorpay's id formats (14 base62 characters today; a little slack for the future). An id
# must match before it is stored or put into a URL path.
LINK_ID = re.compile(r"plink_[A-Za-z0-9]{10,32}")
PAYMENT_ID = re.compile(r"pay_[A-Za-z0-9]{10,32}")
ACCOUNT_ID = re.compile(r"acc_[A-Za-z0-9]{10,32}")
KEY_ID = re.compile(r"rzp_(test|live)_[A-Za-z0-9]{1,64}")
REFUND_ID = re.compile(r"rfnd_[A-Za-z0-9]{10,32}")

HANDLED_EVENTS = frozenset({
    "payment_link.paid",
    "payment_link.partially_paid",
    "payment_link.expired",
    "payment_link.cancelled",
})
LINK_STATUSES = frozenset({"created", "partially_paid", "paid", "expired", "cancelled"})
MAX_NOTES = 15  # Razorpay's limit on notes, paykube's three included
PAYKUBE_NOTES = 3
MAX_DESCRIPTION = 2048
_MAX_AMOUNT = 2**63 - 1
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the status schema's bound


def link_phase(link: Mapping[str, Any]) -> Phase:
    """The phase of a Payment Link.

    `partially_paid` is Processing when the link accepts partial payments (money arrived and
    more is due; the link can no longer be cancelled), else Open. An `expired` link that
    took part of the amount is Failed: the payment did not complete and what was paid must
    be refunded. A `cancelled` link is Canceled, whoever cancelled it.
    """
    status = link.get("status")
    if not isinstance(status, str) or status not in LINK_STATUSES:
        raise ProviderPayloadInvalid("payment link status",
                                     "is not one of " + ", ".join(sorted(LINK_STATUSES)))
    match status:
        case "paid":
            return Phase.PAID
        case "partially_paid":
            return Phase.PROCESSING if link.get("accept_partial") is True else Phase.OPEN
        case "expired":
            paid = optional_int(link, "amount_paid", 0, _MAX_AMOUNT) or 0
            return Phase.FAILED if paid > 0 else Phase.EXPIRED
        case "cancelled":
            return Phase.CANCELED
    return Phase.OPEN


def event_phase(event_type: str, link: Mapping[str, Any]) -> Phase | None:
    """The phase an event reports (the link entity it carries decides), or None for event
    types paykube does not handle."""
    if event_type not in HANDLED_EVENTS:
        return None
    return link_phase(link)


def snapshot(link: Mapping[str, Any], *, payment_id: str | None = None,
             account: str | None = None) -> SessionSnapshot:
    """The facts paykube keeps; ProviderPayloadInvalid when a field is not what Razorpay
    sends. Types and bounds follow the CRD's status schema."""
    if not isinstance(link, Mapping):
        raise ProviderPayloadInvalid("payment link", "is not an object")
    link_id = optional_text(link, "id", 255)
    if not link_id:
        raise ProviderPayloadInvalid("payment link id", "is missing")
    if not LINK_ID.fullmatch(link_id):
        raise ProviderPayloadInvalid("payment link id", "is not a Payment Link id (plink_...)")
    payment_id = payment_id or _last_payment(link)
    if payment_id is not None and not PAYMENT_ID.fullmatch(payment_id):
        raise ProviderPayloadInvalid("payment id", "is not a payment id (pay_...)")
    currency = optional_text(link, "currency", 16)
    expire_by = optional_int(link, "expire_by", 0, _MAX_EPOCH)
    url = optional_text(link, "short_url", 8192)
    return SessionSnapshot(
        session_id=link_id,
        url=url or None,
        payment_intent_id=payment_id,
        payment_status=optional_text(link, "status", 64),
        amount_total=optional_int(link, "amount", 0, _MAX_AMOUNT),
        currency=currency.lower() if currency else None,
        expires_at=(timestamp(dt.datetime.fromtimestamp(expire_by, dt.UTC))
                    if expire_by else None),
        # Razorpay's links and events carry no mode: the account's route binds it.
        livemode=None,
        account=account,
        provider=PROVIDER,
    )


def provider_session(link: Mapping[str, Any], *, account: str | None = None
                     ) -> ProviderSession:
    facts = snapshot(link, account=account)  # checks that it is an object at all
    return ProviderSession(link_phase(link), facts)


def _last_payment(link: Mapping[str, Any]) -> str | None:
    payments = link.get("payments")
    if not isinstance(payments, list) or not payments:
        return None
    last = payments[-1]
    if not isinstance(last, Mapping):
        raise ProviderPayloadInvalid("payments", "is not a list of objects")
    return optional_text(last, "payment_id", 255, "payments[].")


def _description(spec: PaymentSessionSpec, name: str) -> str:
    """A link has one description and no line items: the items are summed up in it."""
    if spec.description:
        text = spec.description
    elif spec.line_items:
        text = ", ".join(f"{i.quantity} x {i.name}" for i in spec.line_items)
    else:
        text = name
    return text[:MAX_DESCRIPTION]


def create_body(request: CreateSession) -> dict[str, Any]:
    """The `POST /v1/payment_links` body; ProviderError (permanent) for what Razorpay would
    refuse for certain, before spending a call on it."""
    spec, ref = request.spec, request.ref
    user_notes = {k: v for k, v in spec.metadata.items()
                  if not k.startswith(RESERVED_METADATA_PREFIX)}
    if len(user_notes) + PAYKUBE_NOTES > MAX_NOTES:
        raise ProviderError(
            f"spec.metadata has {len(user_notes)} keys; Razorpay keeps at most {MAX_NOTES} "
            f"notes and paykube uses {PAYKUBE_NOTES} of them",
            code=ErrorCode.PROVIDER_REJECTED, provider_code="TOO_MANY_NOTES", param="notes",
            provider=PROVIDER)
    notes = user_notes | {"paykube_namespace": ref.namespace, "paykube_name": ref.name,
                          "paykube_uid": ref.uid}
    options = spec.razorpay
    body: dict[str, Any] = {
        "amount": spec.amount,
        "currency": spec.currency.upper(),
        "description": _description(spec, ref.name),
        "expire_by": int(request.expires_at.timestamp()),
        "reference_id": ref.uid,
        "notes": notes,
        "callback_url": spec.success_url,
        "callback_method": "get",
        "accept_partial": options.accept_partial,
        "notify": {"email": options.notify_email, "sms": options.notify_sms},
        "reminder_enable": False,
    }
    if options.accept_partial and options.first_min_partial_amount:
        body["first_min_partial_amount"] = options.first_min_partial_amount
    customer = {k: v for k, v in (("name", options.customer_name),
                                  ("contact", options.customer_contact),
                                  ("email", spec.customer_email)) if v}
    if customer:
        body["customer"] = customer
    return body


REFUND_STATUSES: Mapping[str, RefundPhase] = {
    "pending": RefundPhase.PENDING,
    "processed": RefundPhase.SUCCEEDED,
    "failed": RefundPhase.FAILED,
}
# The refund events (docs/refunds.md); the webhook binds them by the refund's notes.
REFUND_EVENTS = frozenset({"refund.created", "refund.processed", "refund.failed"})
REFUND_PAGE_SIZE = 100  # Razorpay's maximum `count`
MAX_REFUND_PAGES = 10
PAYKUBE_REFUND_NOTES = 4  # namespace, name, uid, session


def refund_body(request: CreateRefund) -> dict[str, Any]:
    """The `POST /v1/payments/{id}/refund` body: the receipt is the PaymentRefund's uid
    (what makes a repeated create findable), the notes name it and its session. Razorpay
    has no refund reason: it is not sent."""
    ref = request.ref
    user_notes = {k: v for k, v in (request.metadata or {}).items()
                  if not k.startswith(RESERVED_METADATA_PREFIX)}
    if len(user_notes) + PAYKUBE_REFUND_NOTES > MAX_NOTES:
        raise ProviderError(
            f"spec.metadata has {len(user_notes)} keys; Razorpay keeps at most {MAX_NOTES} "
            f"notes and paykube uses {PAYKUBE_REFUND_NOTES} of them on a refund",
            code=ErrorCode.PROVIDER_REJECTED, provider_code="TOO_MANY_NOTES", param="notes",
            provider=PROVIDER)
    notes = user_notes | {"paykube_namespace": ref.namespace, "paykube_name": ref.name,
                          "paykube_uid": ref.uid, "paykube_session": request.session.name}
    return {"amount": request.amount, "speed": "normal", "receipt": ref.uid, "notes": notes}


def refund_idempotency_key(request: CreateRefund) -> str:
    """paykube's refund key in the characters Razorpay allows (letters, digits, `-`, `_`)."""
    return request.idempotency_key.replace(":", "_")


def refund_phase(refund: Mapping[str, Any]) -> RefundPhase:
    status = refund.get("status")
    if not isinstance(status, str) or status not in REFUND_STATUSES:
        raise ProviderPayloadInvalid("refund status",
                                     f"is not one of {', '.join(REFUND_STATUSES)}")
    return REFUND_STATUSES[status]


def refund_snapshot(refund: Mapping[str, Any]) -> RefundSnapshot:
    """The facts paykube keeps of a Razorpay refund entity; ProviderPayloadInvalid when a
    field is not what Razorpay sends."""
    if not isinstance(refund, Mapping):
        raise ProviderPayloadInvalid("refund", "is not an object")
    refund_id = optional_text(refund, "id", 255)
    if not refund_id:
        raise ProviderPayloadInvalid("refund id", "is missing")
    if not REFUND_ID.fullmatch(refund_id):
        raise ProviderPayloadInvalid("refund id", "is not a refund id (rfnd_...)")
    amount = optional_int(refund, "amount", 0, _MAX_AMOUNT)
    if amount is None:
        raise ProviderPayloadInvalid("amount", "is missing")
    payment_id = optional_text(refund, "payment_id", 255)
    if payment_id is not None and not PAYMENT_ID.fullmatch(payment_id):
        raise ProviderPayloadInvalid("payment_id", "is not a payment id (pay_...)")
    currency = optional_text(refund, "currency", 16)
    # Razorpay sends notes as [] when there are none.
    notes: Any = refund.get("notes")
    if notes is not None and notes != [] and not isinstance(notes, Mapping):
        raise ProviderPayloadInvalid("notes", "is not an object")
    uid = optional_text(notes, "paykube_uid", 253, "notes.") if isinstance(
        notes, Mapping) else None
    return RefundSnapshot(
        refund_id=refund_id, phase=refund_phase(refund), amount=amount,
        currency=currency.lower() if currency else None, payment_id=payment_id,
        provider_status=optional_text(refund, "status", 64),
        refund_uid=uid,  # a Dashboard refund's receipt is someone's text: not trusted
        livemode=None,  # Razorpay's entities carry no mode: the account's route binds it
    )


def error_from_response(response: httpx.Response) -> ProviderError:
    """Razorpay's `{"error": {code, description, field, source, step, reason}}` as ours,
    keeping its code (`provider_code`), field (`param`) and reason (`error_type`)."""
    error = (_json_object(response) or {}).get("error")
    body: dict[str, Any] = {k: v for k, v in error.items() if isinstance(v, str)} if (
        isinstance(error, dict)) else {}
    status = response.status_code
    message = str(body.get("description") or f"Razorpay answered HTTP {status}")
    if status == 429:
        code = ErrorCode.RATE_LIMITED
    elif status >= 500 or body.get("code") in ("SERVER_ERROR", "GATEWAY_ERROR"):
        code = ErrorCode.PROVIDER_UNAVAILABLE
    elif status in (401, 403):
        code = ErrorCode.CREDENTIALS_INVALID
    else:
        code = ErrorCode.PROVIDER_REJECTED
    reason = body.get("reason")
    field = body.get("field")
    if field and field.startswith("notes."):
        field = "notes"  # the rest is a key of spec.metadata: user data, not a field name
    return ProviderError(
        message, code=code, provider_code=body.get("code"), param=field,
        http_status=status, retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        error_type=reason if reason and reason != "NA" else None, provider=PROVIDER,
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def basic_auth(account: AccountCredentials) -> str:
    """The Authorization header from the account's `key_id:key_secret` value."""
    key_id, secret = split_key(account)
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return f"Basic {token}"


def split_key(account: AccountCredentials) -> tuple[str, str]:
    """(key id, key secret); CredentialsError naming the expected shape, never the value."""
    value = account.api_key.get().strip() if account.api_key else ""
    if not value:
        raise CredentialsError("no Razorpay API key configured",
                               code=ErrorCode.CREDENTIALS_MISSING)
    key_id, sep, secret = value.partition(":")
    if not sep or not secret or not KEY_ID.fullmatch(key_id):
        raise CredentialsError(
            "a Razorpay API key must be one value 'key_id:key_secret' with a key id that "
            "starts with rzp_test_ or rzp_live_", code=ErrorCode.CREDENTIALS_INVALID)
    return key_id, secret


def _is_duplicate_reference(exc: ProviderError) -> bool:
    return (exc.code is ErrorCode.PROVIDER_REJECTED and exc.http_status == 400
            and exc.param == "reference_id")


def _is_duplicate_receipt(exc: ProviderError) -> bool:
    return (exc.code is ErrorCode.PROVIDER_REJECTED and exc.http_status == 400
            and exc.param == "receipt")


class RazorpayProvider:
    name = PROVIDER

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
        return LINK_ID.fullmatch(session_id) is not None

    async def create_session(self, request: CreateSession,
                             account: AccountCredentials) -> ProviderSession:
        body = create_body(request)
        try:
            link = await self._call("create", "POST", "/v1/payment_links", account,
                                    Priority.CREATE, body=body)
        except ProviderError as exc:
            if not _is_duplicate_reference(exc):
                raise
            # An earlier attempt made the link (its answer lost, or the operator crashed
            # before writing the status): that one is this object's.
            found = await self._find(request.ref.uid, account)
            if found is None:
                raise
            link = found
        session = provider_session(link, account=account.account_id)
        snap = session.snapshot
        if (snap.amount_total, snap.currency) != (request.spec.amount, request.spec.currency):
            raise ProviderPayloadInvalid("payment link amount",
                                         "differs from the spec's amount and currency")
        return session

    async def _find(self, reference_id: str, account: AccountCredentials
                    ) -> dict[str, Any] | None:
        answer = await self._call("find", "GET", "/v1/payment_links", account, Priority.CREATE,
                                  query=(("reference_id", reference_id),))
        links = answer.get("payment_links")
        if not isinstance(links, list):
            raise ProviderPayloadInvalid("payment_links", "is not a list")
        ours = [link for link in links
                if isinstance(link, dict) and link.get("reference_id") == reference_id]
        return ours[0] if ours else None

    async def get_session(self, session_id: str,
                          account: AccountCredentials) -> ProviderSession:
        link = await self._call("get", "GET", f"/v1/payment_links/{self._id(session_id)}",
                                account, Priority.POLL)
        return provider_session(link, account=account.account_id)

    async def expire_session(self, session_id: str,
                             account: AccountCredentials) -> ProviderSession:
        """Razorpay cannot expire a link on request: cancel it. It cancels only a `created`
        link; any other state is reported as it is."""
        try:
            link = await self._call(
                "cancel", "POST", f"/v1/payment_links/{self._id(session_id)}/cancel",
                account, Priority.CANCEL, body={})
        except ProviderError as exc:
            if exc.http_status == 400 and exc.code is ErrorCode.PROVIDER_REJECTED:
                return await self.get_session(session_id, account)
            raise
        return provider_session(link, account=account.account_id)

    async def identify(self, account: AccountCredentials) -> AccountIdentity:
        """A real call checks the key: a lookup by a reference no link has (`200` with an
        empty list when the key works, `401` when not). Razorpay answers nothing that names
        the account or the mode, so the account id is the one declared on the provider and
        the mode is the one Razorpay itself gives the key id (rzp_live_ / rzp_test_)."""
        key_id, _ = split_key(account)
        if not account.account_id or not ACCOUNT_ID.fullmatch(account.account_id):
            raise CredentialsError("a Razorpay provider needs spec.accountId (acc_..., on the "
                                   "Razorpay Dashboard): no API call tells a key's account",
                                   code=ErrorCode.CREDENTIALS_MISSING)
        await self._call("identify", "GET", "/v1/payment_links", account, Priority.POLL,
                         query=(("reference_id", "paykube-key-check"),))
        return AccountIdentity(account.account_id, key_id.startswith("rzp_live_"))

    async def ensure_webhook_endpoint(self, account: AccountCredentials, url: str,
                                      ) -> WebhookEndpoint:
        raise ProviderError(
            "Razorpay has no API for a merchant to register its webhooks: add the webhook "
            "on the Razorpay Dashboard with the provider's status.webhookPath",
            code=ErrorCode.PROVIDER_REJECTED, provider=PROVIDER)

    async def delete_webhook_endpoint(self, account: AccountCredentials,
                                      endpoint_id: str) -> None:
        return None  # never registered (see ensure_webhook_endpoint): nothing to delete

    # --- refunds (docs/refunds.md) -------------------------------------------------------

    def valid_refund_id(self, refund_id: str) -> bool:
        return REFUND_ID.fullmatch(refund_id) is not None

    async def create_refund(self, request: CreateRefund,
                            account: AccountCredentials) -> RefundSnapshot:
        """Once per PaymentRefund, by two guards: Razorpay's `X-Refund-Idempotency` (the
        same key and body give the first refund back), and the receipt, which is the
        refund's uid: should Razorpay no longer know the key, a create with the same
        receipt is refused and the first refund is found in the payment's refunds (as a
        repeated link create is found by its reference_id)."""
        payment = self._payment_id(request.payment_id)
        body = refund_body(request)
        try:
            answer = await self._call(
                "refund_create", "POST", f"/v1/payments/{payment}/refund", account,
                Priority.CREATE, body=body,
                extra_headers={"X-Refund-Idempotency": refund_idempotency_key(request)})
        except ProviderError as exc:
            if not _is_duplicate_receipt(exc):
                raise
            found = [r for r in await self.list_refunds(request.payment_id, account)
                     if r.refund_uid == request.ref.uid]
            if not found:
                raise
            return found[0]
        refund = refund_snapshot(answer)
        if refund.payment_id not in (None, request.payment_id):
            raise ProviderPayloadInvalid("refund payment_id", "is not the payment refunded")
        return refund

    async def get_refund(self, refund_id: str, account: AccountCredentials) -> RefundSnapshot:
        if not REFUND_ID.fullmatch(refund_id):
            raise ProviderError("refusing a refund id that is not a Razorpay refund id",
                                code=ErrorCode.PAYLOAD_INVALID, param="refund id",
                                provider=PROVIDER)
        answer = await self._call("refund_get", "GET", f"/v1/refunds/{quote(refund_id)}",
                                  account, Priority.POLL)
        refund = refund_snapshot(answer)
        if refund.refund_id != refund_id:
            raise ProviderPayloadInvalid("refund id", "is not the one asked for")
        return refund

    async def list_refunds(self, payment_id: str,
                           account: AccountCredentials) -> tuple[RefundSnapshot, ...]:
        """Every refund of the payment, page by page (`count`/`skip`); more than
        MAX_REFUND_PAGES pages is refused rather than cut."""
        payment = self._payment_id(payment_id)
        found: dict[str, RefundSnapshot] = {}
        for page in range(MAX_REFUND_PAGES):
            answer = await self._call(
                "refund_list", "GET", f"/v1/payments/{payment}/refunds", account,
                Priority.POLL, query=(("count", str(REFUND_PAGE_SIZE)),
                                      ("skip", str(page * REFUND_PAGE_SIZE))))
            items = answer.get("items")
            if not isinstance(items, list):
                raise ProviderPayloadInvalid("refund list items", "is not a list")
            for item in items:
                refund = refund_snapshot(item)
                if refund.payment_id not in (None, payment_id):
                    raise ProviderPayloadInvalid("refund payment_id", "is not the payment listed")
                found.setdefault(refund.refund_id, refund)
            if len(items) < REFUND_PAGE_SIZE:
                return tuple(found.values())
        raise ProviderPayloadInvalid(
            "refund list", f"has more than {MAX_REFUND_PAGES * REFUND_PAGE_SIZE} refunds")

    @staticmethod
    def _payment_id(payment_id: str) -> str:
        if not PAYMENT_ID.fullmatch(payment_id):
            raise ProviderError("refusing a payment id that is not a Razorpay payment id",
                                code=ErrorCode.PAYLOAD_INVALID, param="payment id",
                                provider=PROVIDER)
        return quote(payment_id, safe="")

    @staticmethod
    def _id(link_id: str) -> str:
        """A link id for a URL path: checked against Razorpay's format, then quoted."""
        if not LINK_ID.fullmatch(link_id):
            raise ProviderError("refusing a session id that is not a Payment Link id",
                                code=ErrorCode.PAYLOAD_INVALID, param="session id",
                                provider=PROVIDER)
        return quote(link_id, safe="")

    async def _call(
        self, operation: str, method: str, path: str, account: AccountCredentials,
        priority: Priority, *, body: dict[str, Any] | None = None,
        query: tuple[tuple[str, str], ...] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": basic_auth(account), **(extra_headers or {})}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        last: ProviderError | None = None
        for attempt in range(self._attempts):
            self._on_wait(priority.name.lower(), await self._limiter.acquire(priority))
            started = time.monotonic()
            try:
                response = await self._http.request(method, path, headers=headers,
                                                    content=content, params=query)
            except httpx.TransportError as exc:
                last = ProviderError(f"Razorpay unreachable: {type(exc).__name__}",
                                     code=ErrorCode.PROVIDER_UNAVAILABLE, provider=PROVIDER)
            else:
                if response.status_code < 400:
                    result = _json_object(response)
                    if result is not None:
                        self._on_call(operation, "ok", time.monotonic() - started)
                        return result
                    # Cut or mangled: whether a create took effect is unknown. Retrying is
                    # safe: a second create is refused by its reference_id, then found.
                    last = ProviderError(
                        f"Razorpay answered HTTP {response.status_code} with a body that is "
                        "not a JSON object", code=ErrorCode.PROVIDER_UNAVAILABLE,
                        http_status=response.status_code, provider=PROVIDER)
                else:
                    last = error_from_response(response)
            self._on_call(operation, last.code.value, time.monotonic() - started)
            if not last.retryable:
                raise last
            if attempt + 1 < self._attempts:
                delay = min(self._backoff_cap, self._backoff_base * 2**attempt)
                delay = max(delay * random.uniform(0.5, 1.0), last.retry_after or 0.0)
                log.info("razorpay call retried", extra={"path": path, "code": last.code.value,
                                                         "delay": round(delay, 2)})
                await asyncio.sleep(delay)
        assert last is not None
        raise last
