"""The webhook process on the real API server: verification failure modes, fuzzing,
event application, duplicates and reordering, ownership checks, API-server outage."""

from __future__ import annotations

import itertools
import json
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paykube_dev.kube import ControlPlane
from paykube_dev.programs import Program, start_webhook
from paykube_webhook.verify import compute_signature
from tests.plugins.paykube_fixtures import WEBHOOK_SECRET, Stack
from tests.plugins.tcp_proxy import TcpProxy

Manifest = dict[str, Any]
Action = Literal["paid", "async_pending", "async_succeeded", "async_failed", "expire"]


def signed(body: bytes, secret: str = WEBHOOK_SECRET, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {"Stripe-Signature": f"t={t},v1={compute_signature(body, secret, t)}",
            "Content-Type": "application/json"}


def post(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{stack.webhook.url}/webhooks/stripe", content=body, headers=headers,
                      timeout=30)


EVENT = json.dumps({"id": "evt_x", "type": "checkout.session.completed",
                    "data": {"object": {"id": "cs_test_x", "metadata": {}}}}).encode()


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, EVENT, 400),  # missing header
        ({"Stripe-Signature": "nonsense", "Content-Type": "application/json"}, EVENT, 400),
        ({"Stripe-Signature": f"t={int(time.time())}", "Content-Type": "application/json"},
         EVENT, 400),  # no v1
        (signed(EVENT, secret="whsec_wrong"), EVENT, 400),
        (signed(EVENT), EVENT + b" ", 400),  # tampered body
        (signed(EVENT, t=int(time.time()) - 3600), EVENT, 400),  # stale
        (signed(EVENT, t=int(time.time()) + 3600), EVENT, 400),  # future
        (signed(b"not json"), b"not json", 400),
        (signed(b"[1, 2]"), b"[1, 2]", 400),
        ({**signed(EVENT), "Content-Type": "text/plain"}, EVENT, 415),
    ],
    ids=["missing", "malformed", "no-v1", "wrong-secret", "tampered", "stale", "future",
         "not-json", "wrong-shape", "content-type"],
)
def test_refusals_are_4xx_with_a_generic_body(stack: Stack, headers: dict[str, str],
                                              body: bytes, status: int) -> None:
    response = post(stack, body, headers)
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert "Traceback" not in response.text


def test_oversize_body_is_413(stack: Stack) -> None:
    body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    assert post(stack, body, signed(body)).status_code == 413


def test_sdk_computed_signature_and_several_v1_values_are_accepted(stack: Stack) -> None:
    t = int(time.time())
    sdk = stripe.WebhookSignature._compute_signature(f"{t}.{EVENT.decode()}", WEBHOOK_SECRET)
    head = f"t={t},v1={'0' * 64},v1={sdk}"
    response = post(stack, EVENT, {"Stripe-Signature": head,
                                   "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored_unmanaged"


def test_unhandled_event_types_are_acknowledged_and_ignored(stack: Stack) -> None:
    body = json.dumps({"id": "evt_y", "type": "charge.refunded",
                       "data": {"object": {"id": "ch_1"}}}).encode()
    response = post(stack, body, signed(body))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored_type")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=2048),
       header=st.one_of(st.none(), st.text(  # any value HTTP itself allows in a header
           st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
           max_size=200)),
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/x"]),
       sign=st.booleans())
def test_fuzz_never_5xx(stack: Stack, body: bytes, header: str | None, content_type: str,
                        sign: bool) -> None:
    headers: dict[bytes, bytes] = {b"Content-Type": content_type.encode()} if content_type else {}
    if sign:
        headers[b"Stripe-Signature"] = signed(body)["Stripe-Signature"].encode()
    elif header is not None:
        headers[b"Stripe-Signature"] = header.strip().encode("latin-1")
    response = httpx.post(f"{stack.webhook.url}/webhooks/stripe", content=body,
                          headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


# -- events applied to objects that no operator touches (solo-* namespaces) ---------------

@dataclass
class Managed:
    namespace: str
    name: str
    uid: str
    session_id: str
    api_key: str


def managed_session(stack: Stack, namespace: str, name: str) -> Managed:
    """An Open PaymentSession whose Stripe session exists in the emulator under a key
    that has no webhook endpoint, so only the events a test delivers reach the webhook."""
    obj = stack.apply(namespace, name)
    uid = obj["metadata"]["uid"]
    key = f"sk_test_{uuid.uuid4().hex[:12]}"
    client = stripe.StripeClient(key, base_addresses={"api": stack.emulator_url},
                                 max_network_retries=0)
    session = client.v1.checkout.sessions.create({
        "mode": "payment", "success_url": "https://shop.example/ok",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 1999, "product_data": {"name": "x"}}}],
        "metadata": {"paykube_namespace": namespace, "paykube_name": name,
                     "paykube_uid": uid},
    })
    status = {"phase": "Open", "sessionId": session.id, "url": session.url,
              "history": [{"phase": "Open", "at": "2026-01-01T00:00:00Z",
                           "source": "operator", "published": False}]}
    stack.kube.kubectl("patch", "paysess", name, "-n", namespace, "--subresource=status",
                       "--type=merge", "-p", json.dumps({"status": status}))
    return Managed(namespace, name, uid, session.id, key)


def events_for(stack: Stack, managed: Managed, *actions: Action) -> list[str]:
    """Drive the session through `actions` in the emulator; return the event ids."""
    ids = []
    for action in actions:
        result = stack.emulator.transition(managed.session_id, action)
        ids.append(result["event"]["id"])
    return ids


def deliver(stack: Stack, event_id: str) -> int:
    deliveries = stack.emulator.deliver(event_id, url=f"{stack.webhook.url}/webhooks/stripe",
                                        secret=WEBHOOK_SECRET)
    status: int = deliveries[-1]["status"]
    return status


STORIES: dict[str, list[Action]] = {
    "paid": ["paid"],
    "async-paid": ["async_pending", "async_succeeded"],
    "async-failed": ["async_pending", "async_failed"],
    "expired": ["expire"],
}
FINAL = {"paid": "Paid", "async-paid": "Paid", "async-failed": "Failed", "expired": "Expired"}


@pytest.mark.parametrize("story", list(STORIES))
def test_each_story_in_order_reaches_its_phase(stack: Stack, unmanaged_namespace: str,
                                               story: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, f"in-order-{story}")
    for event_id in events_for(stack, managed, *STORIES[story]):
        assert deliver(stack, event_id) == 200
    obj = stack.get(unmanaged_namespace, managed.name)
    assert obj["status"]["phase"] == FINAL[story]
    assert obj["status"]["history"][-1]["source"] == "webhook"


@pytest.mark.parametrize("story", ["async-paid", "async-failed"])
def test_duplicates_and_shuffled_orders_converge(stack: Stack, unmanaged_namespace: str,
                                                 story: str) -> None:
    rng = random.Random(story)
    managed = managed_session(stack, unmanaged_namespace, f"shuffled-{story}")
    ids = events_for(stack, managed, *STORIES[story])
    deliveries = list(itertools.chain.from_iterable([ids] * 3))
    rng.shuffle(deliveries)
    for event_id in deliveries:
        assert deliver(stack, event_id) == 200
    obj = stack.get(unmanaged_namespace, managed.name)
    assert obj["status"]["phase"] == FINAL[story]
    phases = [h["phase"] for h in obj["status"]["history"]]
    assert len(phases) == len(set(phases)), "each phase recorded once"


def test_event_for_a_replaced_object_is_ignored(stack: Stack, unmanaged_namespace: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, "replaced")
    (event_id,) = events_for(stack, managed, "paid")
    stack.kube.kubectl("delete", "paysess", "replaced", "-n", unmanaged_namespace)
    stack.apply(unmanaged_namespace, "replaced")  # same name, new uid
    assert deliver(stack, event_id) == 200
    assert "phase" not in stack.get(unmanaged_namespace, "replaced").get("status", {})


def test_metrics_need_basic_auth(stack: Stack) -> None:
    response = httpx.get(f"{stack.webhook.url}/metrics")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.get(f"{stack.webhook.url}/metrics", auth=("prometheus", "nope"))
    assert wrong.status_code == 401


def test_rotation_accepts_old_and_new_secret(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "PAYKUBE_WEBHOOK_SECRETS": "whsec_new_one," + WEBHOOK_SECRET}
    webhook = start_webhook(stack.kube.kubeconfig, tmp_path / "webhook.log", env)
    try:
        for secret in ("whsec_new_one", WEBHOOK_SECRET):
            response = httpx.post(f"{webhook.url}/webhooks/stripe", content=EVENT,
                                  headers=signed(EVENT, secret=secret))
            assert response.status_code == 200
        refused = httpx.post(f"{webhook.url}/webhooks/stripe", content=EVENT,
                             headers=signed(EVENT, secret="whsec_retired"))
        assert refused.status_code == 400
    finally:
        webhook.stop()


def proxied_webhook(kube: ControlPlane, stack: Stack, tmp_path: Path) -> tuple[TcpProxy, Program]:
    """A webhook process that reaches the API server through a proxy the test controls."""
    proxy = TcpProxy(kube.apiserver_port)
    proxy.start()
    config = json.loads(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = tmp_path / "proxied.kubeconfig"
    path.write_text(json.dumps(config))
    return proxy, start_webhook(path, tmp_path / "webhook.log", stack.env)


def test_api_server_down_gives_503_and_the_retry_applies_once(
        kube: ControlPlane, stack: Stack, unmanaged_namespace: str, tmp_path: Path) -> None:
    proxy, webhook = proxied_webhook(kube, stack, tmp_path)
    managed = managed_session(stack, unmanaged_namespace, "outage")
    (event_id,) = events_for(stack, managed, "paid")
    url = f"{webhook.url}/webhooks/stripe"
    try:
        proxy.stop()
        assert httpx.get(f"{webhook.url}/readyz").status_code == 503
        refused = stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1]
        assert refused["status"] == 503
        assert "Traceback" not in refused["response_body"]
        assert stack.get(unmanaged_namespace, "outage")["status"]["phase"] == "Open"
        proxy.start()
        for _ in range(2):  # Stripe's retry, and one more duplicate for good measure
            assert stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1][
                "status"] == 200
        obj = stack.get(unmanaged_namespace, "outage")
        assert obj["status"]["phase"] == "Paid"
        assert [h["phase"] for h in obj["status"]["history"]].count("Paid") == 1
    finally:
        proxy.stop()
        webhook.stop()


def test_sigterm_finishes_in_flight_requests(
        kube: ControlPlane, stack: Stack, unmanaged_namespace: str, tmp_path: Path) -> None:
    """A request already being handled when SIGTERM arrives still gets its answer and its
    status change; then the process exits cleanly."""
    proxy, webhook = proxied_webhook(kube, stack, tmp_path)
    managed = managed_session(stack, unmanaged_namespace, "graceful")
    (event_id,) = events_for(stack, managed, "paid")
    body = stack.emulator.event_payload(event_id)
    answers: list[int] = []
    try:
        proxy.pause()
        sender = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{webhook.url}/webhooks/stripe", content=body, headers=signed(body),
            timeout=30).status_code))
        sender.start()
        time.sleep(1.0)  # the request is in the handler, waiting on the API server
        webhook.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proxy.resume()
        sender.join(30)
        assert answers == [200]
        assert webhook.proc.wait(30) == 0
        assert stack.get(unmanaged_namespace, "graceful")["status"]["phase"] == "Paid"
    finally:
        proxy.resume()
        proxy.stop()
        webhook.stop()


def test_webhook_and_poll_racing_converge(stack: Stack, namespace: str) -> None:
    """Sessions of a second account get no automatic webhooks; the test delivers the event
    itself while the operator's poll (every ~2 s) also sees the payment."""
    key = f"sk_test_race_{uuid.uuid4().hex[:8]}"
    stack.kube.kubectl("create", "secret", "generic", "race", "-n", namespace,
                       f"--from-literal=apiKey={key}")
    names = [f"race-{i}" for i in range(3)]
    sessions = {}
    for name in names:
        stack.apply(namespace, name, credentialsRef={"name": "race"})
    for name in names:
        sessions[name] = stack.wait_phase(namespace, name, "Open")["status"]["sessionId"]
    for name in names:
        event = stack.emulator.pay(sessions[name])["event"]["id"]
        time.sleep(random.uniform(0, 2.5))
        assert deliver(stack, event) == 200
    for name in names:
        obj = stack.wait_phase(namespace, name, "Paid")
        phases = [h["phase"] for h in obj["status"]["history"]]
        assert phases == ["Pending", "Open", "Paid"]
