"""Stripe misbehaving: with 30% of responses 429 or 500, 100 objects all reach Open with
exactly one session each, and the process-wide limiter keeps to its configured rate."""

from __future__ import annotations

from pathlib import Path

from paykube_dev.manifests import session_list
from tests.plugins.paykube_fixtures import Stack, solo_operator

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
    with solo_operator(stack, tmp_path, PAYKUBE_STRIPE_RATE_LIMIT=str(RATE),
                       PAYKUBE_POLL_MIN_INTERVAL="30") as solo:
        solo.emulator.add_fault("rate_limit", count=None, probability=0.15, retry_after=1)
        solo.emulator.add_fault("api_error", count=None, probability=0.18)  # of what is left
        stack.kube.kubectl("apply", "-f", "-",
                           input=session_list(solo.namespace, OBJECTS, prefix="bulk"))
        uids = {}
        for i in range(OBJECTS):
            obj = stack.wait_phase(solo.namespace, f"bulk-{i:05d}", "Open", timeout=180)
            uids[obj["metadata"]["uid"]] = obj["status"]["sessionId"]
        per_object = solo.emulator.stats()["sessions_by_client_reference_id"]
        assert {uid: per_object.get(uid) for uid in uids} == dict.fromkeys(uids, 1)
        requests = solo.emulator.requests("/v1/checkout/sessions")
        faults = [r for r in requests if r["fault"]]
        assert len(faults) >= 0.15 * len(requests), "the faults really happened"
        busiest = max_in_window([r["at"] for r in requests], 1.0)
        assert busiest <= RATE + 1, f"{busiest} requests in one second"
