"""Razorpay-shaped API errors: `{"error": {"code", "description", "field", "source",
"step", "reason", "metadata"}}`. Razorpay answers most refusals, "not found" included,
with 400 `BAD_REQUEST_ERROR`; the SDK picks its exception class from `code` alone."""

from __future__ import annotations

from typing import Any

BAD_REQUEST = "BAD_REQUEST_ERROR"
SERVER_ERROR = "SERVER_ERROR"
GATEWAY_ERROR = "GATEWAY_ERROR"


class RazorpayError(Exception):
    def __init__(
        self, status: int, description: str, *, code: str = BAD_REQUEST,
        field: str | None = None, source: str = "business", step: str = "payment_initiation",
        reason: str = "input_validation_failed", headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.code = code
        self.field = field
        self.source = source
        self.step = step
        self.reason = reason
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "description": self.description}
        if self.field is not None:
            error["field"] = self.field
        error.update({"source": self.source, "step": self.step, "reason": self.reason,
                      "metadata": {}})
        return {"error": error}


def invalid(field: str | None, description: str) -> RazorpayError:
    return RazorpayError(400, description, field=field)


def required(field: str) -> RazorpayError:
    return invalid(field, f"The {field} field is required.")


def extra_field(field: str) -> RazorpayError:
    return invalid(field, f"{field} is/are not required and should not be sent")


def no_such_id() -> RazorpayError:
    return invalid("id", "The id provided does not exist")


def unauthenticated(description: str) -> RazorpayError:
    return RazorpayError(401, description, source="NA", step="NA", reason="NA")


def not_found_url() -> RazorpayError:
    return RazorpayError(400, "The requested URL was not found on the server.",
                         source="NA", step="NA", reason="NA")


def rate_limited(retry_after: int | None) -> RazorpayError:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return RazorpayError(429, "Too many requests", source="NA", step="NA",
                         reason="rate_limit_exceeded", headers=headers)


def server_error() -> RazorpayError:
    return RazorpayError(
        500, "The server encountered an error. The incident has been reported to admins.",
        code=SERVER_ERROR, source="NA", step="NA", reason="NA",
    )
