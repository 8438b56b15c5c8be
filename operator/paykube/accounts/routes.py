"""The webhook's route table: each provider account's signing secrets, and nothing else.

The operator, which may read the Secrets provider objects name, copies each account's
signing secrets into one Secret it owns (data key = `ProviderId.route_key`). The webhook may
`get` that one Secret by name and no other, so it can verify events and can never read an
API key. One key per account, written by JSON merge patch, so that concurrent writers for
different accounts never overwrite each other.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

from paykube.api.providers import ProviderId
from paykube.errors import ConflictError
from paykube.kube.client import KubeClient, NotFound
from paykube.settings import SecretStr, parse_secrets

ROUTE_TABLE_LABELS = {"app.kubernetes.io/part-of": "paykube",
                      "app.kubernetes.io/component": "webhook-routes"}


class RouteTableWriter:
    def __init__(self, kube: KubeClient, namespace: str, name: str) -> None:
        self._kube, self.namespace, self.name = kube, namespace, name

    async def publish(self, provider: ProviderId, secrets: tuple[SecretStr, ...]) -> None:
        value = "\n".join(s.get() for s in secrets)
        await self._patch({provider.route_key: base64.b64encode(value.encode()).decode()})

    async def withdraw(self, provider: ProviderId) -> None:
        await self._patch({provider.route_key: None})

    async def _patch(self, data: dict[str, str | None]) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"
        for _ in range(3):
            try:
                await self._kube.merge_patch(path, {"data": data})
                return
            except NotFound:
                present = {k: v for k, v in data.items() if v is not None}
                try:
                    await self._kube.put_secret(
                        self.namespace, self.name,
                        {k: base64.b64decode(v).decode() for k, v in present.items()},
                        labels=ROUTE_TABLE_LABELS)
                    return
                except ConflictError:  # created meanwhile: patch it
                    continue


class RouteTable:
    """The webhook's view: signing secrets per account, re-read after `ttl` seconds, and
    sooner (at most every `min_refresh` seconds) when a route is unknown or no secret
    matched, so a new account or a rotated secret works within seconds while anonymous
    traffic cannot make it hammer the API server."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, *, ttl: float = 30.0,
                 min_refresh: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._namespace, self._name = kube, namespace, name
        self._ttl, self._min_refresh, self._clock = ttl, min_refresh, clock
        self._routes: dict[str, tuple[SecretStr, ...]] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def secrets(self, provider: ProviderId) -> tuple[SecretStr, ...]:
        if self._read_at is None or self._clock() - self._read_at >= self._ttl:
            await self.refresh()
        return self._routes.get(provider.route_key, ())

    async def refresh(self, *, eager: bool = False) -> bool:
        """Re-read the table; with `eager`, only if the last read is `min_refresh` old.
        Returns whether it was read."""
        async with self._lock:
            now = self._clock()
            if eager and self._read_at is not None and now - self._read_at < self._min_refresh:
                return False
            try:
                data = await self._kube.get_secret(self._namespace, self._name)
            except NotFound:
                data = {}
            self._routes = {k: parse_secrets(v) for k, v in data.items()}
            self._read_at = now
            return True
