"""Everything the operator process builds once at startup (no module globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from paykube.errors import ErrorCode, PaykubeError
from paykube.events.publisher import EventPublisher
from paykube.events.relay import build_publisher
from paykube.kube.client import KubeClient
from paykube.operator.credentials import CredentialResolver
from paykube.operator.metrics import OperatorMetrics
from paykube.operator.reconciler import Reconciler
from paykube.providers.base import PaymentProvider
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.stripe import StripeProvider
from paykube.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    kube: KubeClient
    stripe: StripeProvider
    reconciler: Reconciler
    metrics: OperatorMetrics
    publisher: EventPublisher

    @classmethod
    def build(cls, settings: Settings, kube: KubeClient) -> Runtime:
        metrics = OperatorMetrics()
        limiter = RateLimiter(settings.stripe_rate_limit)
        stripe = StripeProvider(
            api_base=settings.stripe_api_base, limiter=limiter, timeout=settings.stripe_timeout,
            on_call=lambda op, outcome, s: metrics.provider_call("stripe", op, outcome, s),
            on_wait=metrics.waited,
        )
        providers: dict[str, PaymentProvider] = {"stripe": stripe}
        publisher = build_publisher(settings)
        reconciler = Reconciler(kube, provider_factory(providers),
                                CredentialResolver(settings, kube), metrics, publisher)
        return cls(settings, kube, stripe, reconciler, metrics, publisher)

    async def aclose(self) -> None:
        await self.stripe.aclose()
        await self.publisher.aclose()
        await self.kube.aclose()


def provider_factory(providers: dict[str, PaymentProvider]) -> Callable[[str], PaymentProvider]:
    def choose(name: str) -> PaymentProvider:
        try:
            return providers[name]
        except KeyError:
            raise PaykubeError(f"unknown provider {name!r}",
                               code=ErrorCode.PROVIDER_REJECTED) from None

    return choose
