"""Stripe misbehaving: with 30% of responses 429 or 500, 100 objects all reach Open with
exactly one session each, and the process-wide limiter keeps to its configured rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paykube.accounts.default import DefaultCredentials
from paykube.accounts.resolver import AccountResolver
from paykube.api.providers import ProviderId, SecretSource
from paykube.api.types import ObjectRef
from paykube.errors import ApiRejected, CredentialsError, ErrorCode
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import Settings
from paykube_dev.manifests import session_list
from tests.plugins.kube_fixtures import make_namespace
from tests.plugins.paykube_fixtures import Stack, create_secret, solo_operator

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
                       # Polls from 5 s on, so that some run while creates still do.
                       PAYKUBE_POLL_MIN_INTERVAL="5",
                       PAYKUBE_POLL_MAX_INTERVAL="300") as solo:
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
        # Every Stripe call counts against the limit: creates, polls and their retries.
        requests = [r for r in solo.emulator.requests() if r["path"].startswith("/v1/")]
        assert any(r["method"] == "GET" for r in requests), "polls are in the count"
        faults = [r for r in requests if r["fault"]]
        assert len(faults) >= 0.15 * len(requests), "the faults really happened"
        busiest = max_in_window([r["at"] for r in requests], 1.0)
        assert busiest <= RATE + 1, f"{busiest} requests in one second"


async def test_api_server_refusals_are_permanent(stack: Stack, unmanaged_namespace: str,
                                                 kube_client: KubeClient,
                                                 tmp_path: Path) -> None:
    """A 422 (invalid) or 403 (forbidden) from the API server will not pass on a retry: a
    permanent code, not the retryable default; a forbidden provider key Secret is
    CredentialsInvalid. (A namespace no operator writes to: no 409 gets first.)"""
    namespace = unmanaged_namespace
    obj = stack.apply(namespace, "refused-status")
    meta = obj["metadata"]
    bogus = {"history": [{"phase": "Bogus", "at": "2026-01-01T00:00:00Z",
                          "source": "operator"}]}
    with pytest.raises(ApiRejected) as invalid:
        await kube_client.replace_status(ObjectRef(namespace, meta["name"], meta["uid"]),
                                         meta["resourceVersion"], bogus)
    assert invalid.value.http_status == 422
    assert invalid.value.code is ErrorCode.API_REJECTED and not invalid.value.retryable

    create_secret(stack.kube, namespace, "stripe-key", "sk_test_forbidden")
    stack.kube.kubectl("create", "serviceaccount", "no-secrets", "-n", namespace)
    kubeconfig = stack.kube.service_account_kubeconfig(namespace, "no-secrets",
                                                       tmp_path / "sa.kubeconfig")
    settings = Settings.from_env({})
    async with KubeClient(KubeConfig.from_file(kubeconfig)) as limited:
        resolver = AccountResolver(limited, DefaultCredentials(
            settings, limited, StripeSecrets(settings, None)), None, cluster_namespace="x")
        with pytest.raises(CredentialsError) as forbidden:
            await resolver.secret_values(ProviderId("PaymentProvider", namespace, "stripe-key"),
                                         SecretSource(secret_name="stripe-key"))
    assert forbidden.value.code is ErrorCode.CREDENTIALS_INVALID
    assert not forbidden.value.retryable
    assert "sk_test_forbidden" not in forbidden.value.message


def test_a_broken_default_secret_is_retried_until_repaired(stack: Stack,
                                                           tmp_path: Path) -> None:
    """The operator-wide Stripe secret is missing: objects wait (Synced False, a Warning
    Event) rather than fail for good, and go on once the Secret exists."""
    config_ns = make_namespace(stack.kube, "cfg")  # where the operator's own Secret lives
    try:
        with solo_operator(stack, tmp_path, PAYKUBE_STRIPE_API_KEY="",
                           PAYKUBE_STRIPE_CREDENTIALS_SECRET=f"{config_ns}/paykube-default",
                           ) as solo:
            stack.apply(solo.namespace, "waits")
            waiting = stack.wait_for(solo.namespace, "waits", lambda o: any(
                c["type"] == "Synced" and c["status"] == "False"
                for c in o.get("status", {}).get("conditions", [])), what="Synced False")
            assert waiting["status"]["phase"] == "Pending"
            assert waiting["status"]["error"]["code"] == "SecretsUnavailable"
            assert waiting["status"]["error"]["retryable"] is True
            events = stack.kube.kubectl("get", "events", "-n", solo.namespace, "-o", "json",
                                        "--field-selector=type=Warning").stdout
            assert "SecretsUnavailable" in events
            create_secret(stack.kube, config_ns, "paykube-default", "sk_test_repaired")
            opened = stack.wait_phase(solo.namespace, "waits", "Open", timeout=90)
            assert opened["status"].get("error") is None
            assert solo.emulator.stats()["sessions_created"] == 1
    finally:
        stack.kube.kubectl("delete", "namespace", config_ns, "--wait=false", check=False)


def warning_events(stack: Stack, namespace: str, name: str) -> list[dict[str, str]]:
    out = stack.kube.kubectl("get", "events", "-n", namespace, "-o", "json",
                             f"--field-selector=involvedObject.name={name},type=Warning")
    return [{"reason": e["reason"], "message": e["message"]}
            for e in json.loads(out.stdout)["items"]]


def test_a_create_stripe_rejects_ends_failed_with_error_and_event(stack: Stack,
                                                                   tmp_path: Path) -> None:
    with solo_operator(stack, tmp_path) as solo:
        solo.emulator.add_fault("stripe_error", count=1, method="POST",
                                path="/v1/checkout/sessions",
                                error={"status": 400, "code": "parameter_invalid_integer",
                                       "message": "This value must be greater than 0.",
                                       "param": "line_items[0][price_data][unit_amount]"})
        stack.apply(solo.namespace, "refused")
        failed = stack.wait_phase(solo.namespace, "refused", "Failed")
        error = failed["status"]["error"]
        assert error["code"] == "ProviderRejected" and error["retryable"] is False
        assert error["providerCode"] == "parameter_invalid_integer"
        assert error["docUrl"] == "https://stripe.com/docs/error-codes/parameter-invalid-integer"
        assert error["param"] == "line_items[0][price_data][unit_amount]"
        assert error["type"] == "invalid_request_error"
        assert failed["status"].get("sessionId") is None
        warnings = warning_events(stack, solo.namespace, "refused")
        assert any(w["reason"] == "ProviderRejected" and "greater than 0" in w["message"]
                   for w in warnings), warnings


def test_a_refused_expiry_is_replanned_and_created_once(stack: Stack, tmp_path: Path) -> None:
    """The create waited too long and Stripe refuses expires_at: re-plan, same key, Open."""
    with solo_operator(stack, tmp_path) as solo:
        solo.emulator.add_fault("stripe_error", count=1, method="POST",
                                path="/v1/checkout/sessions",
                                error={"status": 400, "code": "parameter_invalid_integer",
                                       "message": "The `expires_at` timestamp must be at "
                                                  "least 30 minutes from creation.",
                                       "param": "expires_at"})
        uid = stack.apply(solo.namespace, "replanned")["metadata"]["uid"]
        opened = stack.wait_phase(solo.namespace, "replanned", "Open")
        creates = [r for r in solo.emulator.requests("/v1/checkout/sessions")
                   if r["method"] == "POST"]
        assert len(creates) == 2 and creates[0]["fault"], "refused once, then created"
        assert creates[0]["idempotency_key"] == creates[1]["idempotency_key"]
        assert [s["id"] for s in solo.emulator.sessions(client_reference_id=uid)] == [
            opened["status"]["sessionId"]]
        assert opened["status"].get("error") is None
