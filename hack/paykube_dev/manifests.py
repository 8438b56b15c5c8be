"""PaymentSession manifests in bulk, for tests, benchmarks and the demo."""

from __future__ import annotations

import json


def session_list(namespace: str, count: int, prefix: str = "bench") -> str:
    items = [{"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
              "metadata": {"name": f"{prefix}-{i:05d}", "namespace": namespace},
              "spec": {"amount": 1000 + i, "currency": "usd",
                       "successUrl": "https://shop.example/ok",
                       "cancelUrl": "https://shop.example/cart"}}
             for i in range(count)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
