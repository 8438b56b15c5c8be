"""What a created session costs the API server, counted by the API server itself
(`apiserver_request_total`) on a control plane of its own, so nothing else is counted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from paykube_dev.apicalls import per_object_calls, request_counts
from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.manifests import session_list
from paykube_dev.programs import start_operator
from paykube_dev.stripe_emulator import EmulatorProcess

SESSIONS = 10


def test_a_created_session_costs_at_most_five_api_calls(tmp_path: Path) -> None:
    with ControlPlane.started(tmp_path / "kube") as plane, \
            EmulatorProcess(tmp_path / "emulator.log") as emulator:
        for crd in ("paymentsession", "paymentprovider", "clusterpaymentprovider"):
            plane.install_crd(REPO / "crds" / f"{crd}.yaml")
        plane.kubectl("create", "namespace", "calls")
        operator = start_operator(plane.kubeconfig, tmp_path / "operator.log", {
            "PAYKUBE_STRIPE_API_BASE": emulator.base_url,
            "PAYKUBE_STRIPE_API_KEY": "sk_test_api_calls", "PAYKUBE_NAMESPACES": "calls",
            # No broker (the outbox marks ride in the same write) and no poll in the window.
            "PAYKUBE_POLL_MIN_INTERVAL": "300", "PAYKUBE_POLL_MAX_INTERVAL": "600"})
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
        finally:
            operator.stop()
    per_session = sum(calls.values()) / SESSIONS
    detail = {f"{v} {r}{'/' + s if s else ''}": n / SESSIONS for (v, r, s), n in calls.items()}
    print(f"{per_session:.1f} API calls per created session: {detail}")
    assert per_session <= 5, f"{per_session:.1f} API calls per session: {detail}"
    # The two status writes (Pending, then Open) and no read of what kopf handed over.
    assert calls[("PATCH", "paymentsessions", "status")] == 2 * SESSIONS, detail
    assert calls[("GET", "paymentsessions", "")] == 0, detail
