"""Stripe misbehaving: with 30% of responses 429 or 500, 100 objects all reach Open with
exactly one session each, and the process-wide limiter keeps to its configured rate."""

from __future__ import annotations

import json
from pathlib import Path

from paykube_dev.programs import start_operator
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess
from tests.plugins.kube_fixtures import make_namespace
from tests.plugins.paykube_fixtures import Stack

OBJECTS = 100
RATE = 20.0


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_hundred_objects_through_429s_and_500s(stack: Stack, tmp_path: Path) -> None:
    namespace = make_namespace(stack.kube, "solo")
    with EmulatorProcess(tmp_path / "emulator.log") as emulator:
        control = EmulatorControl(emulator.base_url)
        control.add_fault("rate_limit", count=None, probability=0.15, retry_after=1)
        control.add_fault("api_error", count=None, probability=0.18)  # of what 429 left
        env = stack.operator_env(PAYKUBE_STRIPE_API_BASE=emulator.base_url,
                                 PAYKUBE_NAMESPACES=namespace,
                                 PAYKUBE_STRIPE_RATE_LIMIT=str(RATE),
                                 PAYKUBE_POLL_MIN_INTERVAL="30")
        operator = start_operator(stack.kube.kubeconfig, tmp_path / "operator.log", env)
        try:
            items = [{"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
                      "metadata": {"name": f"bulk-{i:03d}", "namespace": namespace},
                      "spec": {"amount": 100 + i, "currency": "usd",
                               "successUrl": "https://shop.example/ok",
                               "cancelUrl": "https://shop.example/cart"}}
                     for i in range(OBJECTS)]
            stack.kube.kubectl("apply", "-f", "-",
                               input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                 "items": items}))
            uids = {}
            for item in items:
                name = item["metadata"]["name"]  # type: ignore[index]
                obj = stack.wait_phase(namespace, name, "Open", timeout=180)
                uids[obj["metadata"]["uid"]] = obj["status"]["sessionId"]
            per_object = control.stats()["sessions_by_client_reference_id"]
            assert {uid: per_object.get(uid) for uid in uids} == dict.fromkeys(uids, 1)
            requests = control.requests("/v1/checkout/sessions")
            faults = [r for r in requests if r["fault"]]
            assert len(faults) >= 0.15 * len(requests), "the faults really happened"
            busiest = max_in_window([r["at"] for r in requests], 1.0)
            assert busiest <= RATE + 1, f"{busiest} requests in one second"
        finally:
            operator.stop()
            stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
