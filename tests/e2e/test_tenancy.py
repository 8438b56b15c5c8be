"""Two tenants, each with its own Stripe account as a PaymentProvider, on the real API
server, the real operator and webhook processes and the emulator with two accounts. Every
attack of the tenancy issue is replayed: A's object and the emulator's request log for A's
account stay as they were."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paykube.operator.accounts import REGISTERED_SECRET_KEY
from paykube_dev.stripe_emulator import sign_payload
from tests.plugins.kube_fixtures import make_namespace
from tests.plugins.paykube_fixtures import (
    Manifest,
    Stack,
    create_provider,
    provider_ref,
)


@dataclass(frozen=True)
class Tenant:
    namespace: str
    provider: str
    key: str
    signing: str
    account_id: str

    @property
    def route(self) -> str:
        return f"/webhooks/stripe/ns/{self.namespace}/{self.provider}"

    @property
    def ref(self) -> dict[str, str]:
        return provider_ref(self.provider)


def wait_ready(stack: Stack, namespace: str, name: str, timeout: float = 120.0) -> Manifest:
    deadline = time.monotonic() + timeout
    obj: Manifest = {}
    while time.monotonic() < deadline:
        out = stack.kube.kubectl("get", "paymentprovider", name, "-n", namespace, "-o", "json")
        obj = json.loads(out.stdout)
        conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        if (conditions.get("Ready", {}).get("status") == "True"
                and conditions.get("Synced", {}).get("status") == "True"):
            return obj
        time.sleep(0.3)
    raise AssertionError(f"provider {namespace}/{name} not ready: {obj.get('status')}")


def make_tenant(stack: Stack, prefix: str, *, live: bool = False,
                hooked: bool = True) -> Tenant:
    namespace = make_namespace(stack.kube, f"t-{prefix}")
    mode = "live" if live else "test"
    key = f"sk_{mode}_{prefix}_{uuid.uuid4().hex[:12]}"
    signing = f"whsec_{prefix}_{uuid.uuid4().hex}"
    create_provider(stack.kube, namespace, "stripe-account", key, signing_secret=signing)
    provider = wait_ready(stack, namespace, "stripe-account")
    account_id = stack.emulator.account_for_key(key)["id"]
    assert provider["status"]["accountId"] == account_id
    assert provider["status"]["mode"] == mode
    tenant = Tenant(namespace, "stripe-account", key, signing, account_id)
    assert provider["status"]["webhookPath"] == tenant.route
    route_accepts(stack, tenant.route, signing)
    if hooked:
        stack.emulator.add_webhook_endpoint(f"{stack.webhook.url}{tenant.route}", signing,
                                            api_key=key)
    return tenant


@pytest.fixture
def tenants(stack: Stack) -> Iterator[tuple[Tenant, Tenant]]:
    a, b = make_tenant(stack, "a"), make_tenant(stack, "b")
    yield a, b
    for tenant in (a, b):
        stack.kube.kubectl("delete", "namespace", tenant.namespace, "--wait=false",
                           check=False)


def open_for(stack: Stack, tenant: Tenant, name: str, **spec: Any) -> Manifest:
    stack.apply(tenant.namespace, name, providerRef=tenant.ref, amount=199900, **spec)
    return stack.wait_phase(tenant.namespace, name, "Open", timeout=120)


def forged(session: dict[str, Any], *, event_type: str = "checkout.session.completed",
           livemode: bool | None = None, **changes: Any) -> bytes:
    """A Stripe event about `session` (as the emulator holds it), with `changes`."""
    obj = {**session, **changes}
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type,
             "livemode": session.get("livemode", False) if livemode is None else livemode,
             "created": int(time.time()), "api_version": "2024-06-20",
             "data": {"object": obj}}
    return json.dumps(event).encode()


def route_accepts(stack: Stack, route: str, secret: str, timeout: float = 30.0) -> None:
    """A new account's route works within seconds (the webhook re-reads its route table
    on a miss, at most every 2 s): wait for that before the attacks."""
    probe = json.dumps({"id": "evt_probe", "type": "charge.succeeded",
                        "data": {"object": {}}}).encode()
    deadline = time.monotonic() + timeout
    while post(stack, route, probe, secret).status_code != 200:
        assert time.monotonic() < deadline, f"{route} does not verify its own secret"
        time.sleep(0.5)


def post(stack: Stack, route: str, body: bytes, secret: str) -> httpx.Response:
    headers = {"Stripe-Signature": sign_payload(body, secret, int(time.time())),
               "Content-Type": "application/json"}
    return httpx.post(f"{stack.webhook.url}{route}", content=body, headers=headers, timeout=30)


def unchanged(stack: Stack, tenant: Tenant, name: str, before: Manifest) -> None:
    """Nothing moved: the status is exactly as before (the operator's own bookkeeping in
    metadata annotations may go on meanwhile)."""
    time.sleep(1.0)  # what the webhook or a confirmation would have written, it has by now
    after = stack.get(tenant.namespace, name)
    assert without_outbox(after["status"]) == without_outbox(before["status"])


def without_outbox(status: dict[str, Any]) -> dict[str, Any]:
    """The status but the outbox marks, which the operator records whenever the broker
    confirms (that is bookkeeping of events already stored, not a move)."""
    history = [{k: v for k, v in h.items() if k != "published"}
               for h in status.get("history", [])]
    return {**status, "history": history}


def account_requests(stack: Stack, tenant: Tenant) -> list[dict[str, Any]]:
    return stack.emulator.requests(account_id=tenant.account_id)


def account_writes(stack: Stack, tenant: Tenant) -> list[tuple[str, str]]:
    """What was done with A's key beyond reading (backstop polls and key checks read):
    creates, expiries, endpoint changes."""
    return [(r["method"], r["raw_path"]) for r in account_requests(stack, tenant)
            if r["method"] != "GET"]


def test_tenant_bs_signature_moves_nothing_of_as(stack: Stack,
                                                 tenants: tuple[Tenant, Tenant]) -> None:
    """B owns whsec_B and signs a paid event for A's object and session, with amount 1: on
    A's route it fails verification, on B's own route it is not A's account's event."""
    a, b = tenants
    obj = open_for(stack, a, "order")
    session = stack.emulator.session(obj["status"]["sessionId"])
    body = forged(session, status="complete", payment_status="paid", amount_total=1)
    writes = account_writes(stack, a)
    on_a = post(stack, a.route, body, b.signing)
    assert on_a.status_code == 400
    assert on_a.json() == {"error": {"code": "SignatureInvalid"}}
    on_b = post(stack, b.route, body, b.signing)
    assert on_b.status_code == 200 and on_b.json()["outcome"] == "ignored_wrong_account"
    unchanged(stack, a, "order", obj)
    assert account_writes(stack, a) == writes
    # The unpathed route is the default account's: B's secret is no good there either.
    assert post(stack, "/webhooks/stripe", body, b.signing).status_code == 400


def test_bs_real_session_with_as_metadata_is_never_adopted(
        stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    """While A's create is held (A Pending, no session id), B creates a real session in
    B's own account carrying A's metadata and pays it: Stripe itself signs that event for
    B's route. A still creates and keeps its own session."""
    a, b = tenants
    stack.emulator.add_fault("hold", path="/v1/checkout/sessions", method="POST", count=1)
    stack.apply(a.namespace, "pending", providerRef=a.ref, amount=199900)
    stack.emulator.wait_for_held(1, timeout=30)
    pending = stack.get(a.namespace, "pending")
    assert pending["status"]["phase"] == "Pending" and not pending["status"].get("sessionId")
    meta = pending["metadata"]
    created = httpx.post(
        f"{stack.emulator_url}/v1/checkout/sessions",
        headers={"Authorization": f"Bearer {b.key}"},
        data={"mode": "payment", "success_url": "https://b.example/ok",
              "cancel_url": "https://b.example/no", "line_items[0][quantity]": "1",
              "line_items[0][price_data][currency]": "usd",
              "line_items[0][price_data][unit_amount]": "199900",
              "line_items[0][price_data][product_data][name]": "x",
              "metadata[paykube_namespace]": a.namespace,
              "metadata[paykube_name]": "pending", "metadata[paykube_uid]": meta["uid"]},
        timeout=30).json()
    stack.emulator.pay(created["id"])  # delivered, signed by the emulator, to B's route
    deliveries = stack.emulator.deliveries(stack.emulator.events(session_id=created["id"])[0]["id"])
    assert deliveries and all(d["status"] == 200 for d in deliveries)
    assert stack.get(a.namespace, "pending")["status"].get("sessionId") is None
    stack.emulator.release()
    opened = stack.wait_phase(a.namespace, "pending", "Open")
    own = opened["status"]["sessionId"]
    assert own != created["id"]
    assert stack.emulator.session(own)["metadata"]["paykube_uid"] == meta["uid"]
    assert opened["status"]["url"] != created["url"]


def test_a_signed_open_event_cannot_swap_the_checkout_url(
        stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    obj = open_for(stack, a, "url-swap")
    session = stack.emulator.session(obj["status"]["sessionId"])
    body = forged(session, event_type="checkout.session.expired",
                  url="https://attacker.example/pay")
    response = post(stack, a.route, body, a.signing)
    assert response.status_code == 200
    after = stack.get(a.namespace, "url-swap")
    assert after["status"]["url"] == obj["status"]["url"]
    assert after["status"]["phase"] == "Open"


def test_a_test_mode_event_never_moves_a_live_object(stack: Stack) -> None:
    live = make_tenant(stack, "live", live=True)
    try:
        obj = open_for(stack, live, "live-order")
        assert obj["status"]["livemode"] is True
        session = stack.emulator.session(obj["status"]["sessionId"])
        body = forged(session, livemode=False, status="complete", payment_status="paid")
        response = post(stack, live.route, body, live.signing)
        assert response.json()["outcome"] == "ignored_livemode_mismatch"
        unchanged(stack, live, "live-order", obj)
    finally:
        stack.kube.kubectl("delete", "namespace", live.namespace, "--wait=false", check=False)


@pytest.mark.parametrize("hostile", ["cs_test_../../refunds?x=", "cs_test_abc/cancel#",
                                     "../../v1/payment_intents/pi_1/cancel"])
def test_hostile_ids_are_refused_and_reach_no_path(stack: Stack, tenants: tuple[Tenant, Tenant],
                                                   hostile: str) -> None:
    a, _ = tenants
    obj = open_for(stack, a, "ids")
    session = stack.emulator.session(obj["status"]["sessionId"])
    before = account_requests(stack, a)
    body = forged(session, id=hostile, status="complete", payment_status="paid")
    response = post(stack, a.route, body, a.signing)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "PayloadInvalid"}}
    unchanged(stack, a, "ids", obj)
    paths = [r["path"] for r in account_requests(stack, a)]
    assert len(paths) >= len(before)
    assert all(p.startswith(("/v1/checkout/sessions", "/v1/account", "/v1/balance"))
               and ".." not in p and "refunds" not in p and "payment_intents" not in p
               for p in paths), paths


def test_a_paid_event_for_another_amount_is_ignored(stack: Stack,
                                                    tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    obj = open_for(stack, a, "amount")
    session = stack.emulator.session(obj["status"]["sessionId"])
    for changes in ({"amount_total": 1}, {"currency": "eur"}):
        body = forged(session, status="complete", payment_status="paid", **changes)
        response = post(stack, a.route, body, a.signing)
        assert response.json()["outcome"] == "ignored_amount_mismatch"
    unchanged(stack, a, "amount", obj)


def test_expired_before_completed_for_a_paid_session_ends_paid(stack: Stack) -> None:
    """A signed `expired` arrives first for a session the provider holds as paid: the
    operator confirms with one retrieve, and the provider's answer (paid) wins."""
    tenant = make_tenant(stack, "race", hooked=False)
    try:
        obj = open_for(stack, tenant, "contradicted")
        session_id = obj["status"]["sessionId"]
        stack.emulator.pay(session_id)  # no endpoint: nothing delivered by itself
        session = stack.emulator.session(session_id)
        expired = forged(session, event_type="checkout.session.expired", status="expired",
                         payment_status="unpaid")
        response = post(stack, tenant.route, expired, tenant.signing)
        assert response.json()["outcome"] in ("awaiting_confirmation", "applied")
        paid = stack.wait_phase(tenant.namespace, "contradicted", "Paid")
        phases = [h["phase"] for h in paid["status"]["history"]]
        assert "Expired" not in phases and phases[-1] == "Paid"
        assert paid["status"].get("unconfirmed") is None
        events = stack.kube.kubectl("get", "events", "-n", tenant.namespace, "-o",
                                    "json").stdout
        assert "WebhookContradicted" in events
        # The completed event, late, changes nothing more.
        completed = forged(session)
        assert post(stack, tenant.route, completed, tenant.signing).json()["outcome"] in (
            "duplicate", "applied")
        assert stack.get(tenant.namespace, "contradicted")["status"]["phase"] == "Paid"
    finally:
        stack.kube.kubectl("delete", "namespace", tenant.namespace, "--wait=false",
                           check=False)


def test_a_true_expiry_by_webhook_is_confirmed_and_credited_to_the_event(
        stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    obj = open_for(stack, a, "expires")
    stack.emulator.expire(obj["status"]["sessionId"])  # delivered to A's route
    expired = stack.wait_phase(a.namespace, "expires", "Expired")
    last = expired["status"]["history"][-1]
    assert (last["phase"], last["source"]) == ("Expired", "webhook")
    assert last["eventId"].startswith("evt_")


def test_each_tenants_payment_reaches_paid_through_its_own_route(
        stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    for tenant in tenants:
        obj = open_for(stack, tenant, "mine")
        stack.emulator.pay(obj["status"]["sessionId"])
        paid = stack.wait_phase(tenant.namespace, "mine", "Paid")
        last = paid["status"]["history"][-1]
        assert (last["phase"], last["source"]) == ("Paid", "webhook")


def test_a_cluster_provider_refuses_namespaces_it_does_not_admit(stack: Stack) -> None:
    namespace = make_namespace(stack.kube, "t-denied")
    name = f"shared-{uuid.uuid4().hex[:8]}"
    key = f"sk_test_shared_{uuid.uuid4().hex[:8]}"
    create_provider(stack.kube, None, name, key, secrets_namespace="paykube-system",
                    namespaceSelector={"matchLabels": {"payments.example/shared": "yes"}})
    try:
        stack.apply(namespace, "denied",
                    providerRef=provider_ref(name, "ClusterPaymentProvider"))
        failed = stack.wait_phase(namespace, "denied", "Failed")
        assert failed["status"]["error"]["code"] == "ProviderNotAllowed"
        account = stack.emulator.account_for_key(key)["id"]
        creates = [r for r in stack.emulator.requests(account_id=account)
                   if r["path"] == "/v1/checkout/sessions"]
        assert creates == [], "no provider call before the refusal"
        stack.kube.kubectl("label", "namespace", namespace, "payments.example/shared=yes")
        stack.apply(namespace, "admitted",
                    providerRef=provider_ref(name, "ClusterPaymentProvider"))
        stack.wait_phase(namespace, "admitted", "Open")
    finally:
        stack.kube.kubectl("delete", "clusterpaymentprovider", name, check=False)
        stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_key_and_signing_secret_rotate_without_a_restart(stack: Stack) -> None:
    namespace = make_namespace(stack.kube, "t-rotate")
    old_key, new_key = (f"sk_test_rot_{uuid.uuid4().hex[:10]}" for _ in range(2))
    account = stack.emulator.create_account(keys=[old_key, new_key])["id"]
    old_whsec, new_whsec = (f"whsec_rot_{uuid.uuid4().hex}" for _ in range(2))
    create_provider(stack.kube, namespace, "rotating", old_key, signing_secret=old_whsec)
    tenant = Tenant(namespace, "rotating", old_key, old_whsec, account)
    try:
        wait_ready(stack, namespace, "rotating")
        first = open_for(stack, tenant, "before")
        # Rotate the key: the new one in the Secret, then the old one revoked.
        patch = json.dumps({"stringData": {"apiKey": new_key}})
        stack.kube.kubectl("patch", "secret", "rotating", "-n", namespace, "-p", patch)
        time.sleep(3)  # the secrets TTL of the test stack (2 s)
        stack.emulator.revoke_key(old_key)
        second = open_for(stack, tenant, "after")
        assert second["status"]["sessionId"] != first["status"]["sessionId"]
        # Rotate the signing secret: both during the overlap, then only the new one.
        both = json.dumps({"stringData": {"webhookSecrets": f"{new_whsec}\n{old_whsec}"}})
        stack.kube.kubectl("patch", "secret", "rotating-signing", "-n", namespace, "-p", both)
        session = stack.emulator.session(second["status"]["sessionId"])
        body = forged(session, event_type="checkout.session.completed")

        def accepted(secret: str) -> bool:
            return post(stack, tenant.route, body, secret).status_code == 200

        deadline = time.monotonic() + 30
        while not accepted(new_whsec) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert accepted(new_whsec) and accepted(old_whsec)
        only_new = json.dumps({"stringData": {"webhookSecrets": new_whsec}})
        stack.kube.kubectl("patch", "secret", "rotating-signing", "-n", namespace, "-p",
                           only_new)
        deadline = time.monotonic() + 30
        while accepted(old_whsec) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not accepted(old_whsec) and accepted(new_whsec)
    finally:
        stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_webhook_registration_creates_and_deletes_the_endpoint(stack: Stack) -> None:
    namespace = make_namespace(stack.kube, "t-register")
    key = f"sk_test_reg_{uuid.uuid4().hex[:10]}"
    stack.kube.kubectl("create", "secret", "generic", "registered", "-n", namespace,
                       f"--from-literal=apiKey={key}")
    body = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentProvider",
            "metadata": {"name": "registered", "namespace": namespace},
            "spec": {"type": "stripe", "apiKey": {"secretRef": {"name": "registered"}},
                     "webhook": {"register": True}}}
    stack.kube.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        provider = wait_ready(stack, namespace, "registered")
        account = stack.emulator.account_for_key(key)["id"]
        endpoint_id = provider["status"]["webhookEndpointId"]
        endpoints = stack.emulator.webhook_endpoints(account)
        assert [e["id"] for e in endpoints] == [endpoint_id]
        route = f"/webhooks/stripe/ns/{namespace}/registered"
        assert endpoints[0]["url"] == f"{stack.webhook.url}{route}"
        assert {"checkout.session.completed", "refund.updated", "refund.failed",
                "charge.refunded"} <= set(endpoints[0]["enabled_events"])
        # The endpoint's secret lives in the operator's own namespace, not the tenant's.
        secret_name = provider["status"]["webhookSecretName"]
        stored = json.loads(stack.kube.kubectl("get", "secret", secret_name, "-n",
                                               "paykube-system", "-o", "json").stdout)
        registered_secret = base64.b64decode(
            stored["data"][REGISTERED_SECRET_KEY]).decode().strip()
        # The webhook learns a new route within seconds (its route table): wait for that
        # before paying, as Stripe's own first delivery might otherwise be retried later.
        route_accepts(stack, route, registered_secret)
        tenant = Tenant(namespace, "registered", key, "", account)
        obj = open_for(stack, tenant, "via-registered")
        event_id = stack.emulator.pay(obj["status"]["sessionId"])["event"]["id"]
        stack.wait_phase(namespace, "via-registered", "Paid")
        # The poll may reach Paid first on a loaded machine; what this test proves is that
        # the registered endpoint's own secret is accepted on the provider's route.
        deadline = time.monotonic() + 30
        accepted: list[dict[str, Any]] = []
        while not accepted and time.monotonic() < deadline:
            accepted = [d for d in stack.emulator.deliveries(event_id)
                        if d["endpoint"] == endpoint_id and d["ok"]]
            time.sleep(0.2)
        assert accepted and accepted[0]["url"].endswith(route)
        stack.kube.kubectl("delete", "paymentprovider", "registered", "-n", namespace,
                           "--timeout=60s")
        assert stack.emulator.webhook_endpoints(account) == []
        gone = stack.kube.kubectl("get", "secret", secret_name, "-n", "paykube-system",
                                  check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    finally:
        stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_session_author_cannot_make_the_operator_read_a_secret(stack: Stack) -> None:
    """A user who may create PaymentSessions but not providers: PaymentSessions name
    accounts, never Secrets, so the only lever is a providerRef, and a provider is what
    that user cannot create. A ref to a Secret's name gets no Secret read."""
    namespace = make_namespace(stack.kube, "t-author")
    stack.kube.kubectl("create", "secret", "generic", "team-key", "-n", namespace,
                       "--from-literal=apiKey=sk_test_not_for_sessions")
    stack.kube.kubectl("create", "role", "session-author", "-n", namespace,
                       "--verb=create,get", "--resource=paymentsessions.payments.paykube.dev")
    stack.kube.kubectl("create", "rolebinding", "session-author", "-n", namespace,
                       "--role=session-author", "--user=alice")
    as_alice = ("--as=alice",)
    try:
        refused = stack.kube.kubectl(
            "auth", "can-i", "create", "paymentproviders.payments.paykube.dev", "-n",
            namespace, *as_alice, check=False)
        assert refused.stdout.strip() == "no"
        provider = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentProvider",
                    "metadata": {"name": "team-key", "namespace": namespace},
                    "spec": {"type": "stripe", "apiKey": {"secretRef": {"name": "team-key"}},
                             "webhook": {"register": True}}}
        denied = stack.kube.kubectl("apply", "-f", "-", *as_alice, input=json.dumps(provider),
                                    check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        session = {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
                   "metadata": {"name": "lever", "namespace": namespace},
                   "spec": {"providerRef": {"kind": "PaymentProvider", "name": "team-key"},
                            "amount": 1999, "currency": "usd",
                            "successUrl": "https://shop.example.com/ok",
                            "cancelUrl": "https://shop.example.com/no"}}
        stack.kube.kubectl("create", "-f", "-", *as_alice, input=json.dumps(session))
        waiting = stack.wait_for(namespace, "lever", lambda o: any(
            c["type"] == "Synced" and c["reason"] == "ProviderNotFound"
            for c in o.get("status", {}).get("conditions", [])), what="ProviderNotFound")
        assert waiting["status"]["phase"] == "Pending"
        key_account = stack.emulator.account_for_key("sk_test_not_for_sessions")["id"]
        assert stack.emulator.requests(account_id=key_account) == []
    finally:
        stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
