"""Test layout: tests/unit needs no servers; tests/integration and tests/e2e start the real
local platform through the fixtures in tests/plugins."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.plugins.kube_fixtures",
    "tests.plugins.stripe_fixtures",
    "tests.plugins.razorpay_fixtures",
    "tests.plugins.services_fixtures",
    "tests.plugins.paykube_fixtures",
    "tests.plugins.chart_fixtures",
    "tests.plugins.dashboard_fixtures",
    "tests.plugins.node_fixtures",
    "tests.plugins.stomp_helpers",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        for marker in ("unit", "integration", "e2e", "node"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))
