"""The provider interface: what the operator and webhook need from any PSP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.lifecycle import SessionSnapshot
from paykube.settings import SecretStr


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
