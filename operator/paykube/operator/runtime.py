"""Everything the operator process builds once at startup (no module globals)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paykube.accounts.default import DefaultCredentials
from paykube.accounts.resolver import AccountResolver
from paykube.accounts.routes import RouteTableWriter
from paykube.errors import ErrorCode, PaykubeError
from paykube.events.publisher import EventPublisher
from paykube.events.relay import broker_state, build_publisher
from paykube.explain.service import Explainer, build_explainer
from paykube.kube.client import KubeClient
from paykube.kube.refund_writer import RefundWriter
from paykube.kube.writer import StatusWriter
from paykube.mirror.explanations import MySQLExplanationStore
from paykube.mirror.follow import KINDS, follow, watch_scopes
from paykube.mirror.store import MirrorWriter
from paykube.mirror.wiring import build_engine, build_writer
from paykube.operator.accounts import ProviderAccounts
from paykube.operator.chores import Chore
from paykube.operator.metrics import OperatorMetrics
from paykube.operator.reconciler import Reconciler
from paykube.operator.refunds import RefundReconciler
from paykube.operator.scheduler import PollScheduler
from paykube.providers.base import PaymentProvider
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.razorpay import RazorpayProvider
from paykube.providers.stripe import StripeProvider
from paykube.secrets.files import SecretSetting
from paykube.secrets.health import ReadinessChecks
from paykube.secrets.stripe_secrets import StripeSecrets, build_aws_source
from paykube.settings import Settings

if TYPE_CHECKING:
    from paykube.secrets.aws import SecretsManagerSource  # boto3 loads only when AWS is used


@dataclass
class Runtime:
    settings: Settings
    kube: KubeClient
    stripe: StripeProvider
    reconciler: Reconciler
    metrics: OperatorMetrics
    publisher: EventPublisher
    explainer: Explainer
    mirror: MirrorWriter | None
    credentials: DefaultCredentials
    accounts: AccountResolver
    provider_accounts: ProviderAccounts
    aws: SecretsManagerSource | None
    razorpay: RazorpayProvider | None = None
    polls: PollScheduler | None = None
    refunds: RefundReconciler | None = None
    chores: SessionChores | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def build(cls, settings: Settings, kube: KubeClient) -> Runtime:
        metrics = OperatorMetrics()
        limiter = RateLimiter(settings.stripe_rate_limit)
        stripe = StripeProvider(
            api_base=settings.stripe_api_base, limiter=limiter, timeout=settings.stripe_timeout,
            on_call=lambda op, outcome, s: metrics.provider_call("stripe", op, outcome, s),
            on_wait=metrics.waited,
        )
        # Razorpay's limits are its own: its calls share a limiter of their own.
        razorpay = RazorpayProvider(
            api_base=settings.razorpay_api_base,
            limiter=RateLimiter(settings.razorpay_rate_limit), timeout=settings.razorpay_timeout,
            on_call=lambda op, outcome, s: metrics.provider_call("razorpay", op, outcome, s),
            on_wait=metrics.waited,
        )
        providers: dict[str, PaymentProvider] = {"stripe": stripe, "razorpay": razorpay}
        publisher = build_publisher(settings)
        aws = build_aws_source(settings)
        engine = build_engine(settings, aws)
        mirror = build_writer(engine) if engine is not None else None
        explainer = build_explainer(
            base_url=settings.explain_base_url or None, model=settings.explain_model or None,
            api_key=SecretSetting(settings.explain_api_key, settings.explain_api_key_file,
                                  settings.secrets_ttl),
            timeout=settings.explain_timeout,
            failure_backoff=settings.explain_retry,
            store=MySQLExplanationStore(engine) if engine is not None else None)
        credentials = DefaultCredentials(settings, kube, StripeSecrets(settings, aws),
                                         ttl=settings.secrets_ttl)
        accounts = AccountResolver(kube, credentials, aws,
                                   cluster_namespace=settings.cluster_namespace,
                                   ttl=settings.secrets_ttl)
        choose = provider_factory(providers)
        writer = StatusWriter(kube, publisher, include_url=settings.events_include_url)
        reconciler = Reconciler(kube, choose, accounts, metrics, publisher, explainer, writer,
                                processing_recheck=settings.poll_min_interval,
                                concurrency=settings.reconcile_concurrency)
        writer.on_transition = reconciler.on_transition
        polls = PollScheduler(reconciler.poll, min_interval=settings.poll_min_interval,
                              max_interval=settings.poll_max_interval)
        refund_writer = RefundWriter(kube, publisher)
        refunds = RefundReconciler(kube, choose, accounts, refund_writer, writer)
        refund_writer.on_transition = refunds.on_transition
        routes = RouteTableWriter(kube, settings.cluster_namespace, settings.route_table_secret)
        provider_accounts = ProviderAccounts(kube, accounts, choose, routes, metrics, settings)
        return cls(settings, kube, stripe, reconciler, metrics, publisher, explainer, mirror,
                   credentials, accounts, provider_accounts, aws, razorpay, polls, refunds,
                   SessionChores.build(settings, reconciler, metrics))

    def readiness_checks(self) -> ReadinessChecks:
        """What /readyz asks: the API server, and each operator-wide credential that is
        configured (a broken one would stall every object that relies on it)."""
        settings = self.settings

        checks = ReadinessChecks("operator", required={"apiServer": self.kube.check_ready},
                                 reported={"broker": lambda: broker_state(self.publisher)})
        if (settings.aws_stripe_secret_id or settings.stripe_api_key_file
                or settings.stripe_api_key or settings.stripe_credentials_secret):
            checks.required["stripeCredentials"] = self.credentials.api_key
        aws, db_secret = self.aws, settings.aws_database_secret_id
        if aws is not None and db_secret and self.mirror is not None:
            checks.required["databaseCredentials"] = lambda: aws.adatabase_credentials(
                db_secret, host=settings.database_host or None, port=settings.database_port,
                dbname=settings.database_name)
        return checks

    def start(self) -> None:
        """Start background work; call inside the running event loop."""
        if self.polls is not None:
            self._tasks.add(asyncio.create_task(self.polls.run()))
        for chore in self.chores.all if self.chores is not None else ():
            self._tasks.add(asyncio.create_task(chore.run()))
        if self.mirror is not None:
            self.mirror.start()
            for scope in watch_scopes(self.settings.namespaces):
                for kind in KINDS:  # PaymentSessions and PaymentRefunds, a watch each
                    self._tasks.add(asyncio.create_task(
                        follow(self.kube, self.mirror, scope, self.settings.namespaces,
                               kind=kind)))

    async def aclose(self) -> None:
        for chore in self.chores.all if self.chores is not None else ():
            await chore.drain()
        await self.reconciler.writer.drain()
        if self.refunds is not None:
            await self.refunds.writer.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.mirror is not None:
            await self.mirror.aclose()
        await self.explainer.aclose()
        await self.stripe.aclose()
        if self.razorpay is not None:
            await self.razorpay.aclose()
        await self.publisher.aclose()
        await self.kube.aclose()


@dataclass(frozen=True)
class SessionChores:
    """The per-object chores of PaymentSessions, fed by their watch events (handlers.py)."""

    confirm: Chore
    outbox: Chore
    explain: Chore | None

    @classmethod
    def build(cls, settings: Settings, reconciler: Reconciler,
              metrics: OperatorMetrics) -> SessionChores:
        def count(chore: str, outcome: str) -> None:
            metrics.reconciles.labels(chore, outcome).inc()

        # A webhook's reported ending is settled at once and every second until it is.
        confirm = Chore("confirm", reconciler.confirm, interval=1.0, on_outcome=count)
        outbox = Chore("outbox", reconciler.relay, interval=settings.outbox_interval,
                       initial_delay=settings.outbox_interval, on_outcome=count)
        explain = None
        if settings.explain_base_url and settings.explain_model:
            explain = Chore("explain", reconciler.explain_missing,
                            interval=max(settings.explain_retry, 1.0), on_outcome=count)
        return cls(confirm, outbox, explain)

    @property
    def all(self) -> tuple[Chore, ...]:
        return (self.confirm, self.outbox) + ((self.explain,) if self.explain else ())


def provider_factory(providers: dict[str, PaymentProvider]) -> Callable[[str], PaymentProvider]:
    def choose(name: str) -> PaymentProvider:
        try:
            return providers[name]
        except KeyError:
            raise PaykubeError(f"unknown provider {name!r}",
                               code=ErrorCode.PROVIDER_REJECTED) from None

    return choose
