"""Prometheus metrics of the webhook, in their own registry (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("paykube_webhook_requests", "Webhook requests by outcome",
                                ["outcome"], registry=self.registry)
        self.verification_failures = Counter(
            "paykube_webhook_verification_failures", "Refused signatures by reason",
            ["reason"], registry=self.registry)
        self.apply_seconds = Histogram("paykube_webhook_apply_seconds",
                                       "Time to make an event durable in the API server",
                                       registry=self.registry)
        self.publishes = Counter("paykube_webhook_publishes", "Payment event relays by outcome",
                                 ["outcome"], registry=self.registry)
        self.kube_events = Counter(
            "paykube_webhook_kube_events",
            "Kubernetes Events for applied PSP events: written, or skipped over the budget",
            ["outcome"], registry=self.registry)
        self.broker_connected = Gauge(
            "paykube_webhook_broker_connected",
            "1 while a broker connection is open; 0 otherwise, also with no broker configured",
            registry=self.registry)
