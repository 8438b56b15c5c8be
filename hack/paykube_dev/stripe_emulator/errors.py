"""Stripe-shaped API errors: `{"error": {"type", "code", "message", "param", "doc_url"}}`."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

DOCS = "https://stripe.com/docs"


def doc_url(code: str) -> str:
    return f"{DOCS}/error-codes/{code.replace('_', '-')}"


class StripeError(Exception):
    """An error answer of the emulated API.

    `saved` tells whether Stripe's idempotency layer stores this result for replay: it does
    for requests that began executing, not for ones refused by validation, auth or limits.
    """

    def __init__(
        self, status: int, message: str, *, type_: str = "invalid_request_error",
        code: str | None = None, param: str | None = None, saved: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.saved = saved
        self.headers = dict(headers or {})

    def body(self, request_id: str, livemode: bool = False) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = doc_url(self.code)
        if self.param is not None:
            err["param"] = self.param
        mode = "" if livemode else "test/"
        err["request_log_url"] = f"https://dashboard.stripe.com/{mode}logs/{request_id}"
        return {"error": err}


def missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param,
    )


def invalid(param: str, message: str, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def invalid_integer(param: str, value: object) -> StripeError:
    return StripeError(
        400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param,
    )


def unknown_param(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param,
    )


def no_such(object_name: str, object_id: str, param: str, *, saved: bool = True) -> StripeError:
    return StripeError(
        404, f"No such {object_name}: '{object_id}'", code="resource_missing", param=param,
        saved=saved,
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see {DOCS} or we can help at "
        "https://support.stripe.com/.",
    )


def no_api_key() -> StripeError:
    return StripeError(
        401,
        "You did not provide an API key. You need to provide your API key in the "
        "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
        "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or "
        "we can help at https://support.stripe.com/.",
    )


def invalid_api_key(masked: str) -> StripeError:
    return StripeError(401, f"Invalid API Key provided: {masked}")


def expired_api_key(masked: str) -> StripeError:
    return StripeError(401, f"Expired API Key provided: {masked}", code="api_key_expired")


def rate_limited(reason: str, retry_after: int | None, *, as_date: bool = False) -> StripeError:
    headers = {"Stripe-Rate-Limited-Reason": reason}
    if retry_after is not None:
        # An HTTP-date has whole seconds: round up so that the wait is never shorter.
        headers["Retry-After"] = (
            email.utils.formatdate(math.ceil(time.time()) + retry_after, usegmt=True)
            if as_date else str(retry_after)
        )
    return StripeError(
        429,
        "Request rate limit exceeded. You can learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit", headers=headers,
    )


def api_error(should_retry: bool | None) -> StripeError:
    headers = {} if should_retry is None else {"Stripe-Should-Retry": str(should_retry).lower()}
    return StripeError(
        500,
        "Sorry, something went wrong. We've already been notified of the problem, but if you "
        "need any help, you can reach out to us at https://support.stripe.com/contact/",
        type_="api_error", headers=headers,
    )


def idempotency_params(key: str) -> StripeError:
    return StripeError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        type_="idempotency_error",
    )


def idempotency_endpoint(key: str, first: str, now: str) -> StripeError:
    return StripeError(
        400,
        "Keys for idempotent requests can only be used for the same endpoint they were first "
        f"used for ('{first}' vs '{now}'). Try using a key other than '{key}' if you meant to "
        "execute a different request.",
        type_="idempotency_error",
    )


def not_a_platform() -> StripeError:
    return StripeError(
        403,
        "Only Stripe Connect platforms can work with other accounts. If you specified a "
        "client_id parameter, make sure it's correct. If you need to setup a Stripe Connect "
        "platform, you can do so at https://dashboard.stripe.com/account/applications/settings.",
    )


def account_invalid(masked_key: str, account_id: str) -> StripeError:
    return StripeError(
        403,
        f"The provided key '{masked_key}' does not have access to account '{account_id}' (or "
        "that account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )
