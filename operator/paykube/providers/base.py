"""The provider interface: what the operator and webhook need from any PSP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, ProviderError
from paykube.lifecycle import SessionSnapshot
from paykube.settings import SecretStr


class ProviderPayloadInvalid(ProviderError, ValueError):
    """A provider object or event paykube cannot read (wrong type, out of range, missing).

    Permanent: the same object reads the same way again. Also a ValueError, so that code
    which refuses malformed input by catching ValueError (the webhook) still does. The
    message names the field, never its value, which may be personal data.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"the provider's {field} {problem}", code=ErrorCode.PAYLOAD_INVALID,
                         param=field)


@dataclass(frozen=True)
class CreateSession:
    """Everything needed to open a checkout session; deterministic for one object."""

    ref: ObjectRef
    spec: PaymentSessionSpec
    expires_at: dt.datetime

    @property
    def idempotency_key(self) -> str:
        return f"paykube:{self.ref.uid}:create"


@dataclass(frozen=True)
class ProviderSession:
    """A session as the provider reports it, mapped to our phase."""

    phase: Phase
    snapshot: SessionSnapshot


class PaymentProvider(Protocol):
    name: str

    async def create_session(self, request: CreateSession, api_key: SecretStr) -> ProviderSession:
        ...

    async def get_session(self, session_id: str, api_key: SecretStr) -> ProviderSession:
        ...

    async def expire_session(self, session_id: str, api_key: SecretStr) -> ProviderSession:
        """Expire an open session; when it already ended, return its final state instead."""
        ...
