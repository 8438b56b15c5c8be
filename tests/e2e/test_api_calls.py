"""What a created session costs the API server, counted by the API server itself
(`apiserver_request_total`) on a control plane of its own, so nothing else is counted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from paykube_dev.apicalls import per_object_calls, request_counts
from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_operator, start_webhook
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

SESSIONS = 10


def test_a_created_session_costs_four_api_calls(tmp_path: Path) -> None:
    """The finalizer, Pending, Open and the Open Event: kopf writes no record of the
    handled spec (the status says it), and nothing is read."""
    with ControlPlane.started(tmp_path / "kube") as plane, \
            EmulatorProcess(tmp_path / "emulator.log") as emulator:
        for crd in ("paymentsession", "paymentprovider", "clusterpaymentprovider"):
            plane.install_crd(REPO / "crds" / f"{crd}.yaml")
        plane.kubectl("create", "namespace", "calls")
        operator = start_operator(plane.kubeconfig, tmp_path / "operator.log", {
            "PAYKUBE_STRIPE_API_BASE": emulator.base_url,
            "PAYKUBE_STRIPE_API_KEY": "sk_test_api_calls", "PAYKUBE_NAMESPACES": "calls",
            # No broker (the outbox marks ride in the same write) and no poll in the window.
            "PAYKUBE_POLL_MIN_INTERVAL": "300", "PAYKUBE_POLL_MAX_INTERVAL": "600",
            # Two at once: most of the objects wait for a reconcile slot, as in a burst,
            # and must still be written from kopf's body, not read first.
            "PAYKUBE_RECONCILE_CONCURRENCY": "2"})
        try:
            before = request_counts(plane)
            plane.kubectl("create", "-f", "-", input=session_list("calls", SESSIONS))
            deadline = time.monotonic() + 60
            phases: list[str] = []
            while time.monotonic() < deadline:
                items = json.loads(plane.kubectl("get", "paysess", "-n", "calls", "-o",
                                                 "json").stdout)["items"]
                phases = [i.get("status", {}).get("phase") for i in items]
                if phases.count("Open") == SESSIONS:
                    break
                time.sleep(0.3)
            assert phases.count("Open") == SESSIONS, phases
            time.sleep(2)  # kopf's bookkeeping after its handler, and the Events
            calls = per_object_calls(before, request_counts(plane), created_by_client=SESSIONS)
            annotations = [i["metadata"].get("annotations", {}) for i in json.loads(
                plane.kubectl("get", "paysess", "-n", "calls", "-o", "json").stdout)["items"]]
        finally:
            operator.stop()
    per_session = sum(calls.values()) / SESSIONS
    detail = {f"{v} {r}{'/' + s if s else ''}": n / SESSIONS for (v, r, s), n in calls.items()}
    print(f"{per_session:.1f} API calls per created session: {detail}")
    assert per_session <= 4, f"{per_session:.1f} API calls per session: {detail}"
    # The two status writes (Pending, then Open) and no read of what kopf handed over.
    assert calls[("PATCH", "paymentsessions", "status")] == 2 * SESSIONS, detail
    assert calls[("PATCH", "paymentsessions", "")] == SESSIONS, detail  # the finalizer
    assert calls[("GET", "paymentsessions", "")] == 0, detail
    assert not any(k.startswith("paykube.dev/") for a in annotations for k in a), annotations


def test_with_its_session_cache_the_webhook_writes_each_event_without_a_read(
        tmp_path: Path) -> None:
    """PAYKUBE_WEBHOOK_SESSION_CACHE: one status write per applied event, no GET first
    (the watch's copy is the write's base), counted by the API server."""
    secret = "whsec_api_calls"
    with ControlPlane.started(tmp_path / "kube") as plane, \
            EmulatorProcess(tmp_path / "emulator.log") as emulator:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            plane.install_crd(crd)
        plane.kubectl("create", "namespace", "calls")
        env = {"PAYKUBE_STRIPE_API_BASE": emulator.base_url,
               "PAYKUBE_STRIPE_API_KEY": "sk_test_api_calls", "PAYKUBE_NAMESPACES": "calls",
               "PAYKUBE_WEBHOOK_SECRETS": secret, "PAYKUBE_WEBHOOK_SESSION_CACHE": "true",
               "PAYKUBE_POLL_MIN_INTERVAL": "300", "PAYKUBE_POLL_MAX_INTERVAL": "600"}
        webhook = start_webhook(plane.kubeconfig, tmp_path / "webhook.log", env)
        operator = start_operator(plane.kubeconfig, tmp_path / "operator.log", env)
        control = EmulatorControl(emulator.base_url)
        control.add_webhook_endpoint(f"{webhook.url}/webhooks/stripe", secret,
                                     api_key="sk_test_api_calls")
        try:
            plane.kubectl("create", "-f", "-", input=session_list("calls", SESSIONS))
            sessions = wait_phases(plane, "Open")
            time.sleep(2)  # the webhook's watch has the Open objects by now
            before = request_counts(plane)
            for item in sessions:
                control.pay(item["status"]["sessionId"])
            wait_phases(plane, "Paid")
            time.sleep(2)  # the Events after the answers
            calls = per_object_calls(before, request_counts(plane), created_by_client=0)
        finally:
            operator.stop()
            webhook.stop()
    detail = {f"{v} {r}{'/' + s if s else ''}": n / SESSIONS for (v, r, s), n in calls.items()}
    print(f"API calls per applied event: {detail}")
    assert calls[("PATCH", "paymentsessions", "status")] == SESSIONS, detail
    assert calls[("GET", "paymentsessions", "")] == 0, detail


def wait_phases(plane: ControlPlane, phase: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = json.loads(plane.kubectl("get", "paysess", "-n", "calls", "-o",
                                         "json").stdout)["items"]
        if [i.get("status", {}).get("phase") for i in items].count(phase) == SESSIONS:
            return items
        time.sleep(0.3)
    raise AssertionError(f"not all {phase}: {[i.get('status', {}).get('phase') for i in items]}")
