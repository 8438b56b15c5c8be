"""Prometheus metrics of the dashboard, in their own registry (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class DashboardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("paykube_dashboard_requests", "Requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.request_seconds = Histogram(
            "paykube_dashboard_request_seconds", "Time to answer a request, by route",
            ["route"], registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0))
        self.failed_logins = Counter(
            "paykube_dashboard_failed_logins",
            "Requests refused for wrong credentials (missing credentials are not counted)",
            registry=self.registry)
        self.unauthorized = Counter(
            "paykube_dashboard_unauthorized", "Requests answered 401, by reason",
            ["reason"], registry=self.registry)
