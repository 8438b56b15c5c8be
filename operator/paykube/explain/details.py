"""What an explanation is looked up by: one provider error, reduced to stable fields."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from paykube.api.types import ErrorInfo
from paykube.errors import ProviderError

# Stripe's error `type` values. `ProviderError.provider_code` and `ErrorInfo.provider_code`
# hold Stripe's `code`, or its `type` when the error has no code.
STRIPE_ERROR_TYPES = frozenset({
    "api_error", "card_error", "idempotency_error", "invalid_request_error",
    "rate_limit_error", "authentication_error", "permission_error", "api_connection_error",
})

_INDEX = re.compile(r"\[\d+\]")
_METADATA_KEY = re.compile(r"(metadata\]?)\[[^\]]*\]")
_PARAM_OK = re.compile(r"^[A-Za-z0-9_.\[\]*]{1,120}$")
_CODE_OK = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def normalize_param(param: str | None) -> str | None:
    """Stripe's `param` without indices and metadata keys (which are user data):
    `line_items[0][price_data][currency]` → `line_items[*][price_data][currency]`,
    `metadata[customer]` → `metadata[*]`. Anything unexpected is dropped."""
    if not param:
        return None
    text = _METADATA_KEY.sub(r"\1[*]", _INDEX.sub("[*]", param.strip()))
    return text if _PARAM_OK.match(text) else None


def _token(value: str | None) -> str | None:
    return value if value and _CODE_OK.match(value) else None


@dataclass(frozen=True)
class ErrorDetails:
    """A provider error as the catalog and the model see it."""

    provider: str = "stripe"
    code: str | None = None        # the provider's code, e.g. parameter_invalid_integer
    error_type: str | None = None  # the provider's type, e.g. invalid_request_error
    param: str | None = None       # normalized (see normalize_param)
    message: str = ""              # the provider's message: never sent anywhere unredacted
    paykube_code: str | None = None  # ours, e.g. ProviderRejected

    @classmethod
    def of(cls, error: ErrorInfo | ProviderError | ErrorDetails, *, provider: str = "stripe",
           param: str | None = None, error_type: str | None = None) -> ErrorDetails:
        """From a `ProviderError` or an `ErrorInfo` (both keep the provider's param and
        type; explicit `param`/`error_type` win), or details already made."""
        if isinstance(error, ErrorDetails):
            return error
        if isinstance(error, ProviderError):
            provider = error.provider or provider  # the PSP that answered wins
            provider_code = error.provider_code
            param = param if param is not None else error.param
            error_type = error_type or error.error_type
            paykube_code = error.code.value
        else:
            provider_code = error.provider_code
            param = param if param is not None else error.param
            error_type = error_type or error.type
            paykube_code = error.code
        code: str | None = provider_code
        if code is not None and (code == error_type or code in STRIPE_ERROR_TYPES):
            error_type = error_type or code
            code = None
        return cls(provider=provider, code=_token(code), error_type=_token(error_type),
                   param=normalize_param(param), message=error.message,
                   paykube_code=paykube_code)

    @property
    def is_provider_error(self) -> bool:
        return bool(self.code or self.error_type)

    def cache_code(self, redacted_message: str) -> str:
        """The `code` column of the explanation cache. Errors without a provider code
        share a type (invalid_request_error), so their key adds a short digest of the
        redacted message, which holds no values."""
        if self.code:
            return self.code
        digest = hashlib.sha256(redacted_message.encode()).hexdigest()[:12]
        return f"{self.error_type or 'unknown'}#{digest}"
