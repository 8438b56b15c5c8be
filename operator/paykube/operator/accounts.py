"""What the operator does to a PaymentProvider or ClusterPaymentProvider: check its key
with a real call, publish its signing secrets to the webhook's route table, and (with
`webhook.register`) keep its webhook endpoint at the PSP."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paykube.accounts.resolver import Account, AccountResolver
from paykube.accounts.routes import RouteTableWriter
from paykube.api.providers import ProviderId, ProviderSpec
from paykube.api.types import Condition
from paykube.errors import CredentialsError, ErrorCode, PaykubeError
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.lifecycle import READY, SYNCED, set_condition, timestamp
from paykube.operator.metrics import OperatorMetrics
from paykube.providers.base import PaymentProvider
from paykube.settings import SecretStr, Settings, parse_secrets

log = logging.getLogger(__name__)
REGISTERED_SECRET_KEY = "webhookSecrets"  # noqa: S105 -- a Secret data key


def provider_id(body: Manifest) -> ProviderId:
    meta = body["metadata"]
    if body.get("kind") == "ClusterPaymentProvider" or not meta.get("namespace"):
        return ProviderId("ClusterPaymentProvider", "", meta["name"])
    return ProviderId("PaymentProvider", meta["namespace"], meta["name"])


def registered_secret_name(provider: ProviderId) -> str:
    """The Secret, in the operator's own namespace, holding the signing secret of the
    endpoint the operator registered for `provider`: there, the operator needs no write
    access to tenants' Secrets. A digest keeps distinct accounts' names distinct."""
    digest = hashlib.sha256(provider.route_key.encode()).hexdigest()[:10]
    return f"paykube-whsec-{provider.name[:200]}-{digest}"


@dataclass
class ProviderAccounts:
    kube: KubeClient
    accounts: AccountResolver
    providers: Callable[[str], PaymentProvider]
    routes: RouteTableWriter
    metrics: OperatorMetrics
    settings: Settings
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # Registered endpoints checked by this process for the events it handles.
    _subscribed: set[str] = field(default_factory=set)

    async def reconcile(self, body: Manifest) -> dict[str, Any]:
        """Check the account and publish its routes; returns the status written."""
        provider = provider_id(body)
        self.accounts.forget(provider)
        spec = ProviderSpec.from_dict(body.get("spec") or {})
        old = body.get("status") or {}
        generation = int(body["metadata"].get("generation", 1))
        now = self.clock()
        status: dict[str, Any] = {"observedGeneration": generation,
                                  "webhookPath": provider.webhook_path(spec.type),
                                  "lastCheckedAt": timestamp(now)}
        conditions = tuple(Condition.from_dict(c) for c in old.get("conditions") or ())
        account: Account | None = None
        try:
            account = await self.accounts.for_provider(provider, spec)
            identity = await self.providers(spec.type).identify(account.credentials)
        except PaykubeError as exc:
            self.metrics.provider_checks.labels(exc.code.value).inc()
            conditions = set_condition(conditions, READY, False, exc.code.value, exc.message,
                                       now, generation)
        else:
            self.metrics.provider_checks.labels("ok").inc()
            mode = "live" if identity.livemode else "test"
            status |= {"accountId": identity.account_id, "mode": mode}
            conditions = set_condition(
                conditions, READY, True, "KeyVerified",
                f"The API key works: account {identity.account_id}, {mode} mode", now,
                generation)
        try:
            secrets = await self._signing_secrets(provider, body, spec, account, status)
            await self.routes.publish(provider, secrets)
        except PaykubeError as exc:
            conditions = set_condition(conditions, SYNCED, False, exc.code.value, exc.message,
                                       now, generation)
        else:
            conditions = set_condition(
                conditions, SYNCED, True, "RoutesPublished",
                f"{len(secrets)} signing secret(s) published for {status['webhookPath']}",
                now, generation)
        status["conditions"] = [c.to_dict() for c in conditions]
        await self.kube.patch_object_status(provider.api_path, status)
        return status

    async def _signing_secrets(self, provider: ProviderId, body: Manifest,
                               spec: ProviderSpec, account: Account | None,
                               status: dict[str, Any]) -> tuple[SecretStr, ...]:
        secrets: list[SecretStr] = []
        if spec.signing_secrets is not None:
            secrets += await self.accounts.secret_values(provider, spec.signing_secrets)
        if spec.register_webhook:
            if account is None:
                raise CredentialsError("webhook.register needs a working API key",
                                       code=ErrorCode.CREDENTIALS_INVALID)
            secrets += await self._registered(provider, body, spec, account, status)
        return tuple(dict.fromkeys(secrets))  # in order, without repeats

    async def _registered(self, provider: ProviderId, body: Manifest, spec: ProviderSpec,
                          account: Account, status: dict[str, Any]) -> tuple[SecretStr, ...]:
        """The registered endpoint's signing secret, registering the endpoint first if
        needed. The endpoint's secret is only known when it is created, so it is stored in
        a Secret the operator owns (deleted with the provider, by ownerReference)."""
        base = self.settings.webhook_public_url
        if not base:
            raise CredentialsError("webhook.register is set but the operator has no public "
                                   "webhook URL (PAYKUBE_WEBHOOK_PUBLIC_URL)",
                                   code=ErrorCode.CREDENTIALS_MISSING)
        namespace = self.accounts.cluster_namespace
        name = registered_secret_name(provider)
        old = body.get("status") or {}
        try:
            stored = (await self.kube.get_secret(namespace, name)).get(REGISTERED_SECRET_KEY)
        except NotFound:
            stored = None
        psp = self.providers(spec.type)
        url = base + provider.webhook_path(spec.type)
        known = old.get("webhookEndpointId")
        if stored and known and known in self._subscribed:
            status |= {"webhookEndpointId": known, "webhookSecretName": name}
            return parse_secrets(stored)
        # Finds the endpoint for the URL (and, once per process, subscribes one an older
        # paykube registered to the events this one handles, such as refunds), or creates
        # it when it is gone.
        endpoint = await psp.ensure_webhook_endpoint(account.credentials, url)
        if stored and endpoint.secret is None:
            # The endpoint whose secret we stored (a reconcile racing the status write of
            # the one that registered it sees no id yet: not a reason to register again).
            self._subscribed.add(endpoint.id)
            status |= {"webhookEndpointId": endpoint.id, "webhookSecretName": name}
            return parse_secrets(stored)
        if endpoint.secret is None:
            # Registered before a crash, its secret never stored: only a new one tells it.
            await psp.delete_webhook_endpoint(account.credentials, endpoint.id)
            endpoint = await psp.ensure_webhook_endpoint(account.credentials, url)
        assert endpoint.secret is not None
        await self.kube.put_secret(namespace, name, {REGISTERED_SECRET_KEY:
                                                     endpoint.secret.get()},
                                   labels={"app.kubernetes.io/part-of": "paykube",
                                           "payments.paykube.dev/route": provider.route_key})
        log.info("webhook endpoint registered", extra={"provider": str(provider),
                                                       "endpoint": endpoint.id})
        status |= {"webhookEndpointId": endpoint.id, "webhookSecretName": name}
        return (endpoint.secret,)

    async def finalize(self, body: Manifest) -> None:
        """On delete: remove the registered endpoint at the PSP and the account's route."""
        provider = provider_id(body)
        endpoint_id = (body.get("status") or {}).get("webhookEndpointId")
        if endpoint_id:
            spec = ProviderSpec.from_dict(body.get("spec") or {})
            try:
                account = await self.accounts.for_provider(provider, spec)
                await self.providers(spec.type).delete_webhook_endpoint(account.credentials,
                                                                        endpoint_id)
            except PaykubeError as exc:
                if exc.retryable:
                    raise
                # The key is gone or refused: nothing more can be done from here.
                log.warning("webhook endpoint not deleted: %s", exc.message,
                            extra={"provider": str(provider), "endpoint": endpoint_id})
        if endpoint_id or (body.get("status") or {}).get("webhookSecretName"):
            with contextlib.suppress(NotFound):
                await self.kube.delete_secret(self.accounts.cluster_namespace,
                                              registered_secret_name(provider))
        await self.routes.withdraw(provider)
        self.accounts.forget(provider)
