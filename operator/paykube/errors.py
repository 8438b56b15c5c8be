"""The paykube error catalog: stable codes, each retryable or permanent.

The same code appears in condition reasons, `status.error.code`, Events, log fields,
metric labels and HTTP error bodies, so it must never be renamed lightly.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    PROVIDER_REJECTED = "ProviderRejected"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    RATE_LIMITED = "RateLimited"
    CREDENTIALS_INVALID = "CredentialsInvalid"
    CREDENTIALS_MISSING = "CredentialsMissing"
    SIGNATURE_INVALID = "SignatureInvalid"
    PAYLOAD_INVALID = "PayloadInvalid"
    API_SERVER_UNAVAILABLE = "ApiServerUnavailable"
    BROKER_UNAVAILABLE = "BrokerUnavailable"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    SECRETS_UNAVAILABLE = "SecretsUnavailable"
    CONFLICT = "Conflict"
    API_REJECTED = "ApiRejected"  # the API server refused the request (403, 422, ...)
    PROVIDER_NOT_FOUND = "ProviderNotFound"  # the referenced account object does not exist
    PROVIDER_NOT_ALLOWED = "ProviderNotAllowed"  # the namespace may not use that account
    # Refunds refused before any PSP call (docs/refunds.md).
    SESSION_NOT_FOUND = "SessionNotFound"
    SESSION_NOT_PAID = "SessionNotPaid"
    AMOUNT_EXCEEDS_REFUNDABLE = "AmountExceedsRefundable"
    TOO_MANY_REFUNDS = "TooManyRefunds"
    REFUND_FAILED = "RefundFailed"  # the PSP reports the refund failed

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset({
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.RATE_LIMITED,
    ErrorCode.API_SERVER_UNAVAILABLE,
    ErrorCode.BROKER_UNAVAILABLE,
    ErrorCode.DATABASE_UNAVAILABLE,
    ErrorCode.SECRETS_UNAVAILABLE,
    ErrorCode.CONFLICT,
    # Created later is normal in GitOps (the session applied before its provider).
    ErrorCode.PROVIDER_NOT_FOUND,
})


class PaykubeError(Exception):
    """Base of every error paykube raises on purpose."""

    code: ErrorCode = ErrorCode.PROVIDER_UNAVAILABLE

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def retryable(self) -> bool:
        return self.code.retryable


class ProviderError(PaykubeError):
    """An error answered by (or on the way to) the payment provider.

    Keeps the provider's own code and doc URL beside ours.
    """

    def __init__(
        self, message: str, *, code: ErrorCode, provider_code: str | None = None,
        doc_url: str | None = None, param: str | None = None, http_status: int | None = None,
        retry_after: float | None = None, error_type: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.provider = provider  # the PSP type that answered (None: Stripe, the first)
        self.provider_code = provider_code
        self.doc_url = doc_url
        self.param = param
        self.http_status = http_status
        self.retry_after = retry_after
        self.error_type = error_type


class ConflictError(PaykubeError):
    """The object changed since it was read (HTTP 409 on a resourceVersion precondition)."""

    code = ErrorCode.CONFLICT


class ApiServerUnavailable(PaykubeError):
    code = ErrorCode.API_SERVER_UNAVAILABLE


class ApiRejected(PaykubeError):
    """The API server refused the request for good (403 Forbidden, 422 Invalid, ...):
    retrying the same request cannot help; RBAC or the request must change."""

    code = ErrorCode.API_REJECTED

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class CredentialsError(PaykubeError):
    code = ErrorCode.CREDENTIALS_MISSING
