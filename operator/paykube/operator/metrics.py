"""Prometheus metrics of the operator, in their own registry (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("paykube_operator_reconciles", "Handler runs by outcome",
                                  ["handler", "outcome"], registry=self.registry)
        self.provider_calls = Counter(
            "paykube_provider_calls", "Provider API calls by operation and outcome",
            ["provider", "operation", "outcome"], registry=self.registry)
        self.provider_latency = Histogram(
            "paykube_provider_call_seconds", "Provider API call latency",
            ["provider", "operation"], registry=self.registry)
        self.transitions = Counter("paykube_phase_transitions", "Phase transitions written",
                                   ["from_phase", "to_phase", "source"],
                                   registry=self.registry)
        self.contradictions = Counter(
            "paykube_webhook_contradictions",
            "Webhook-reported endings the provider's own answer contradicted",
            ["reported_phase", "provider_phase"], registry=self.registry)
        self.provider_checks = Counter(
            "paykube_provider_account_checks", "Checks of provider accounts' keys by outcome",
            ["outcome"], registry=self.registry)
        self.ratelimit_wait = Histogram(
            "paykube_ratelimit_wait_seconds", "Time spent waiting for the provider rate limiter",
            ["priority"], registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def provider_call(self, provider: str, operation: str, outcome: str, seconds: float) -> None:
        self.provider_calls.labels(provider, operation, outcome).inc()
        self.provider_latency.labels(provider, operation).observe(seconds)

    def waited(self, priority: str, seconds: float) -> None:
        self.ratelimit_wait.labels(priority).observe(seconds)
