"""The webhook process on the real API server: verification failure modes, fuzzing,
event application, duplicates and reordering, ownership checks, API-server outage."""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from paykube.providers.stripe import HANDLED_EVENTS
from paykube_dev.kube import ControlPlane
from paykube_dev.proc import wait_until
from paykube_dev.programs import Program, start_webhook
from paykube_dev.services import ActiveMQ
from paykube_dev.stripe_emulator import sign_payload
from tests.plugins.paykube_fixtures import (
    METRICS_AUTH,
    WEBHOOK_SECRET,
    Stack,
    create_secret,
    provider_ref,
)
from tests.plugins.tcp_proxy import TcpProxy

Manifest = dict[str, Any]
Action = Literal["paid", "async_pending", "async_succeeded", "async_failed", "expire"]


def signed(body: bytes, secret: str = WEBHOOK_SECRET, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {"Stripe-Signature": sign_payload(body, secret, t),
            "Content-Type": "application/json"}


def post(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{stack.webhook.url}/webhooks/stripe", content=body, headers=headers,
                      timeout=30)


EVENT = json.dumps({"id": "evt_x", "type": "checkout.session.completed",
                    "data": {"object": {"id": "cs_test_x", "metadata": {}}}}).encode()
JSON = {"Content-Type": "application/json"}
BIG = b"{" + b" " * (1024 * 1024 + 10) + b"}"


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the webhook's /metrics, keyed by name and sorted labels."""
    response = httpx.get(f"{stack.webhook.url}/metrics", auth=METRICS_AUTH, timeout=10)
    response.raise_for_status()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def counter(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
            **labels: str) -> float:
    return samples.get((f"{name}_total", tuple(sorted(labels.items()))), 0.0)


@dataclass(frozen=True)
class Refusal:
    """A request the webhook must refuse, built when the test runs (signatures go stale),
    with the status, error code and metric sample that prove why it was refused."""

    build: Callable[[], tuple[dict[str, str], bytes]]
    status: int
    code: str
    metric: tuple[str, dict[str, str]]


def _failure(reason: str) -> tuple[str, dict[str, str]]:
    return "paykube_webhook_verification_failures", {"reason": reason}


def _outcome(outcome: str) -> tuple[str, dict[str, str]]:
    return "paykube_webhook_requests", {"outcome": outcome}


REFUSALS = {
    "missing": Refusal(lambda: (JSON, EVENT), 400, "SignatureInvalid",
                       _failure("missing_header")),
    "malformed": Refusal(lambda: ({"Stripe-Signature": "nonsense", **JSON}, EVENT), 400,
                         "SignatureInvalid", _failure("malformed_header")),
    "no-v1": Refusal(lambda: ({"Stripe-Signature": f"t={int(time.time())}", **JSON}, EVENT),
                     400, "SignatureInvalid", _failure("no_v1_signature")),
    "wrong-secret": Refusal(lambda: (signed(EVENT, secret="whsec_wrong"), EVENT), 400,
                            "SignatureInvalid", _failure("no_matching_signature")),
    "tampered": Refusal(lambda: (signed(EVENT), EVENT + b" "), 400, "SignatureInvalid",
                        _failure("no_matching_signature")),
    "stale": Refusal(lambda: (signed(EVENT, t=int(time.time()) - 3600), EVENT), 400,
                     "SignatureInvalid", _failure("timestamp_outside_tolerance")),
    "future": Refusal(lambda: (signed(EVENT, t=int(time.time()) + 3600), EVENT), 400,
                      "SignatureInvalid", _failure("timestamp_outside_tolerance")),
    "not-json": Refusal(lambda: (signed(b"not json"), b"not json"), 400, "PayloadInvalid",
                        _outcome("payload_invalid")),
    "wrong-shape": Refusal(lambda: (signed(b"[1, 2]"), b"[1, 2]"), 400, "PayloadInvalid",
                           _outcome("payload_invalid")),
    "deeply-nested": Refusal(
        lambda: (signed(b"[" * 100_000 + b"]" * 100_000), b"[" * 100_000 + b"]" * 100_000),
        400, "PayloadInvalid", _outcome("payload_invalid")),
    "content-type": Refusal(lambda: ({**signed(EVENT), "Content-Type": "text/plain"}, EVENT),
                            415, "PayloadInvalid", _outcome("unsupported_media_type")),
    "oversize": Refusal(lambda: (signed(BIG), BIG), 413, "PayloadInvalid",
                        _outcome("too_large")),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_4xx_with_a_generic_body_and_a_counted_reason(stack: Stack,
                                                                   case: str) -> None:
    refusal = REFUSALS[case]
    headers, body = refusal.build()
    name, labels = refusal.metric
    before = counter(scrape(stack), name, **labels)
    response = post(stack, body, headers)
    assert response.status_code == refusal.status
    assert response.json() == {"error": {"code": refusal.code}}
    assert counter(scrape(stack), name, **labels) == before + 1


def test_oversize_body_without_content_length_is_413(stack: Stack) -> None:
    """A chunked body announces no size: the cap holds while reading."""
    def chunks() -> Iterator[bytes]:
        yield BIG[: len(BIG) // 2]
        yield BIG[len(BIG) // 2:]

    response = httpx.post(f"{stack.webhook.url}/webhooks/stripe", content=chunks(),
                          headers=signed(BIG), timeout=30)
    assert response.status_code == 413
    assert response.json() == {"error": {"code": "PayloadInvalid"}}


def raw_post(url: str, head: dict[str, str], parts: list[bytes], pause: float) -> tuple[int, Any]:
    """POST over a plain socket, the body in `parts` with a pause between them, so the
    server sees the body arrive in separate TCP segments."""
    parsed = httpx.URL(url)
    lines = [f"POST {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}",
             f"Content-Length: {sum(len(p) for p in parts)}", "Connection: close",
             *(f"{k}: {v}" for k, v in head.items())]
    with socket.create_connection((parsed.host, parsed.port or 80), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            sock.sendall(part)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def test_a_body_split_across_segments_is_verified_whole(stack: Stack,
                                                        unmanaged_namespace: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, "split")
    (event_id,) = events_for(stack, managed, "paid")
    body = stack.emulator.event_payload(event_id)
    middle = len(body) // 2
    status, answer = raw_post(f"{stack.webhook.url}/webhooks/stripe", signed(body),
                              [body[:middle], body[middle:]], pause=0.5)
    assert (status, answer["outcome"]) == (200, "applied")
    assert stack.get(unmanaged_namespace, "split")["status"]["phase"] == "Paid"


def test_sdk_computed_signature_and_several_v1_values_are_accepted(stack: Stack) -> None:
    t = int(time.time())
    sdk = stripe.WebhookSignature._compute_signature(f"{t}.{EVENT.decode()}", WEBHOOK_SECRET)
    head = f"t={t},v1={'0' * 64},v1={sdk}"
    response = post(stack, EVENT, {"Stripe-Signature": head,
                                   "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored_unmanaged"


def test_unhandled_event_types_are_acknowledged_and_ignored(stack: Stack) -> None:
    body = json.dumps({"id": "evt_y", "type": "charge.dispute.created",
                       "data": {"object": {"id": "dp_1"}}}).encode()
    response = post(stack, body, signed(body))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored_type")


def test_refund_events_of_payments_paykube_did_not_make_are_ignored(stack: Stack) -> None:
    """A charge or refund without paykube's metadata (another system's payment, a
    Dashboard refund's refund.* events) is acknowledged and left alone."""
    for event_type, obj in (("charge.refunded", {"id": "ch_1", "amount": 100,
                                                 "amount_refunded": 100}),
                            ("refund.created", {"id": "re_1", "amount": 100,
                                                "status": "succeeded"})):
        body = json.dumps({"id": "evt_z", "type": event_type,
                           "data": {"object": obj}}).encode()
        response = post(stack, body, signed(body))
        assert (response.status_code, response.json()["outcome"]) == (200,
                                                                      "ignored_unmanaged")


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


def deliver(stack: Stack, event_id: str, *, path: str = "/webhooks/stripe",
            secret: str = WEBHOOK_SECRET) -> int:
    deliveries = stack.emulator.deliver(event_id, url=f"{stack.webhook.url}{path}",
                                        secret=secret)
    status: int = deliveries[-1]["status"]
    return status


STORIES: dict[str, list[Action]] = {
    "paid": ["paid"],
    "async-paid": ["async_pending", "async_succeeded"],
    "async-failed": ["async_pending", "async_failed"],
    "expired": ["expire"],
}
# Where the webhook alone takes each story: (phase, unconfirmed report). An ending other than
# Paid waits for the operator's confirming retrieve (no operator runs in these namespaces;
# tests/e2e cover the confirmation).
FINAL = {"paid": ("Paid", None), "async-paid": ("Paid", None),
         "async-failed": ("Processing", "Failed"), "expired": ("Open", "Expired")}


@pytest.mark.parametrize("story", list(STORIES))
def test_each_story_in_order_reaches_its_phase(stack: Stack, unmanaged_namespace: str,
                                               story: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, f"in-order-{story}")
    for event_id in events_for(stack, managed, *STORIES[story]):
        assert deliver(stack, event_id) == 200
    status = stack.get(unmanaged_namespace, managed.name)["status"]
    reported = (status.get("unconfirmed") or {}).get("phase")
    assert (status["phase"], reported) == FINAL[story]
    if reported is None:
        assert status["history"][-1]["source"] == "webhook"
    else:
        assert status["unconfirmed"]["eventId"].startswith("evt_")


def comparable(stack: Stack, managed: Managed, obj: Manifest) -> dict[str, Any]:
    """The status without what differs between two objects by nature: times, and ids that
    belong to the object's own Stripe session (checked against that session here)."""
    status = obj["status"]
    session = stack.emulator.session(managed.session_id)
    intent = session.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    assert status["sessionId"] == managed.session_id
    assert status.get("paymentIntentId") == intent_id
    phases = [h["phase"] for h in status["history"]]
    assert len(phases) == len(set(phases)), f"a phase recorded twice: {phases}"
    return {"phase": status["phase"], "paymentStatus": status.get("paymentStatus"),
            "hasPaymentIntent": intent_id is not None,
            "amountTotal": status.get("amountTotal"), "currency": status.get("currency"),
            "unconfirmed": (status.get("unconfirmed") or {}).get("phase"),
            "conditions": sorted((c["type"], c["status"], c.get("reason"))
                                 for c in status.get("conditions", [])),
            "historyPhases": set(phases)}


@pytest.mark.parametrize("story", list(STORIES))
def test_duplicates_and_shuffled_orders_end_as_in_order_delivery(
        stack: Stack, unmanaged_namespace: str, story: str) -> None:
    in_order = managed_session(stack, unmanaged_namespace, f"in-order-{story}")
    for event_id in events_for(stack, in_order, *STORIES[story]):
        assert deliver(stack, event_id) == 200
    expected = comparable(stack, in_order, stack.get(unmanaged_namespace, in_order.name))
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for attempt in range(3):
        managed = managed_session(stack, unmanaged_namespace, f"shuffled-{story}-{attempt}")
        deliveries = events_for(stack, managed, *STORIES[story]) * 3
        rng.shuffle(deliveries)
        for event_id in deliveries:
            assert deliver(stack, event_id) == 200
        got = comparable(stack, managed, stack.get(unmanaged_namespace, managed.name))
        context = f"seed {seed}, attempt {attempt}"
        # A phase passed over because a later event came first is never seen, so history
        # may lack it (Processing); everything else must equal in-order delivery.
        assert got["historyPhases"] <= expected["historyPhases"], context
        assert got["phase"] in got["historyPhases"], context
        assert ({**got, "historyPhases": None}
                == {**expected, "historyPhases": None}), context


def test_event_for_a_replaced_object_is_ignored(stack: Stack, unmanaged_namespace: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, "replaced")
    (event_id,) = events_for(stack, managed, "paid")
    stack.kube.kubectl("delete", "paysess", "replaced", "-n", unmanaged_namespace)
    stack.apply(unmanaged_namespace, "replaced")  # same name, new uid
    assert deliver(stack, event_id) == 200
    assert "phase" not in stack.get(unmanaged_namespace, "replaced").get("status", {})


def session_event(managed: Managed, event_type: str = "checkout.session.completed",
                  metadata: dict[str, Any] | None = None, **fields: Any) -> bytes:
    """A checkout.session.* event about `managed` (or about `metadata`), as Stripe shapes it."""
    session = {"id": managed.session_id, "object": "checkout.session", "status": "complete",
               "payment_status": "paid", "amount_total": 1999, "currency": "usd",
               "metadata": metadata if metadata is not None else {
                   "paykube_namespace": managed.namespace, "paykube_name": managed.name,
                   "paykube_uid": managed.uid}, **fields}
    return json.dumps({"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
                       "type": event_type, "data": {"object": session}}).encode()


BAD_FIELDS: dict[str, dict[str, Any]] = {
    "expires-text": {"expires_at": "x"},
    "expires-float-overflow": {"expires_at": 1e20},
    "expires-int-overflow": {"expires_at": 10**20},
    "amount-text": {"amount_total": "x"},
    "amount-beyond-int64": {"amount_total": 2**64},
    "amount-bool": {"amount_total": True},
    "status-object": {"payment_status": {"paid": True}},
    "intent-list": {"payment_intent": ["pi_1"]},
    "intent-unhashable-status": {"status": "complete", "payment_status": "unpaid",
                                 "payment_intent": {"id": "pi_1", "status": ["x"]}},
    "lone-surrogate": {"currency": "\ud800"},
    "session-id-number": {"id": 7},
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_signed_event_with_a_malformed_field_is_400_and_changes_nothing(
        stack: Stack, unmanaged_namespace: str, case: str) -> None:
    managed = managed_session(stack, unmanaged_namespace, "malformed")
    before = counter(scrape(stack), "paykube_webhook_requests", outcome="payload_invalid")
    body = session_event(managed, **BAD_FIELDS[case])
    response = post(stack, body, signed(body))
    assert response.status_code == 400, response.text
    assert response.json() == {"error": {"code": "PayloadInvalid"}}
    assert counter(scrape(stack), "paykube_webhook_requests",
                   outcome="payload_invalid") == before + 1
    assert stack.get(unmanaged_namespace, "malformed")["status"]["phase"] == "Open"


@pytest.mark.parametrize("metadata", [
    {"paykube_namespace": "../../api/v1/namespaces/x", "paykube_name": "n", "paykube_uid": "u"},
    {"paykube_namespace": "{ns}", "paykube_name": "Not A Name", "paykube_uid": "u"},
    {"paykube_namespace": "{ns}", "paykube_name": "ok/status", "paykube_uid": "u"},
    {"paykube_namespace": "{ns}", "paykube_name": "unsafe", "paykube_uid": ""},
    {"paykube_namespace": "{ns}", "paykube_name": ["unsafe"], "paykube_uid": "u"},
    ["not", "a", "mapping"],
], ids=["path-traversal", "bad-name", "slash-in-name", "empty-uid", "list-name", "list"])
def test_metadata_that_cannot_name_an_object_is_acknowledged_and_ignored(
        stack: Stack, unmanaged_namespace: str, metadata: Any) -> None:
    managed = managed_session(stack, unmanaged_namespace, "unsafe")
    if isinstance(metadata, dict):
        metadata = {k: v.replace("{ns}", unmanaged_namespace) if isinstance(v, str) else v
                    for k, v in metadata.items()}
    body = session_event(managed, metadata=metadata)
    response = post(stack, body, signed(body))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored_unmanaged")
    assert stack.get(unmanaged_namespace, "unsafe")["status"]["phase"] == "Open"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["complete", "expired", "open", "paid", "unpaid", "no_payment_required",
                       "succeeded", "canceled", "requires_payment_method", "usd", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "status", "object"]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
SESSION_FIELDS = st.dictionaries(
    st.sampled_from(["id", "status", "payment_status", "amount_total", "currency", "url",
                     "expires_at", "payment_intent", "metadata"]) | st.text(max_size=12),
    JSON_VALUES, max_size=8)


def reopen(stack: Stack, managed: Managed) -> None:
    """Put the object back to Open, so that every example reaches the apply step anew."""
    status = {"phase": "Open", "sessionId": managed.session_id, "paymentStatus": None,
              "paymentIntentId": None, "amountTotal": None, "currency": None,
              "history": [{"phase": "Open", "at": "2026-01-01T00:00:00Z",
                           "source": "operator", "published": False}]}
    stack.kube.kubectl("patch", "paysess", managed.name, "-n", managed.namespace,
                       "--subresource=status", "--type=merge",
                       "-p", json.dumps({"status": status}))


def test_fuzzed_session_fields_of_a_managed_object_never_5xx(
        stack: Stack, unmanaged_namespace: str) -> None:
    """Signed events that reach the apply step (their metadata names a real object) with
    arbitrary JSON in the session's fields: the sender's 4xx or a 2xx, never our 5xx."""
    managed = managed_session(stack, unmanaged_namespace, "fuzzed")

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event_type=st.sampled_from(sorted(HANDLED_EVENTS)), fields=SESSION_FIELDS)
    def check(event_type: str, fields: dict[str, Any]) -> None:
        reopen(stack, managed)
        body = session_event(managed, event_type, **{"status": "complete", **fields})
        response = post(stack, body, signed(body))
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text

    check()


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


def test_readiness_reports_a_broker_outage_without_failing(
        stack: Stack, activemq: ActiveMQ, unmanaged_namespace: str, tmp_path: Path) -> None:
    """With the broker unreachable the webhook stays ready (the outbox keeps the events)
    and says so in /readyz and the broker gauge; it reconnects by itself afterwards."""
    proxy = TcpProxy(activemq.stomp_port)
    proxy.start()
    env = {**stack.env, "PAYKUBE_BROKER_URLS": f"127.0.0.1:{proxy.port}"}
    webhook = start_webhook(stack.kube.kubeconfig, tmp_path / "webhook.log", env)
    view = dataclasses.replace(stack, webhook=webhook)

    def broker() -> tuple[int, str, float]:
        ready = httpx.get(f"{webhook.url}/readyz", timeout=10)
        gauge = scrape(view)[("paykube_webhook_broker_connected", ())]
        return ready.status_code, ready.json()["broker"], gauge

    managed = managed_session(stack, unmanaged_namespace, "broker-outage")
    (event_id,) = events_for(stack, managed, "paid")
    try:
        wait_until(lambda: broker() == (200, "connected", 1.0), timeout=30,
                   what="broker connected", proc=webhook.proc, log=webhook.log)
        proxy.stop()
        wait_until(lambda: broker() == (200, "disconnected", 0.0), timeout=30,
                   what="broker reported down", proc=webhook.proc, log=webhook.log)
        url = f"{webhook.url}/webhooks/stripe"
        assert stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1][
            "status"] == 200
        obj = stack.get(unmanaged_namespace, managed.name)
        assert obj["status"]["phase"] == "Paid"
        assert obj["status"]["history"][-1]["published"] is False
        proxy.start()
        wait_until(lambda: broker() == (200, "connected", 1.0), timeout=60,
                   what="broker reconnected", proc=webhook.proc, log=webhook.log)
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
    signing = f"whsec_race_{uuid.uuid4().hex}"
    create_secret(stack.kube, namespace, "race", key, signing_secret=signing)
    names = [f"race-{i}" for i in range(3)]
    sessions = {}
    for name in names:
        stack.apply(namespace, name, providerRef=provider_ref("race"))
    for name in names:
        sessions[name] = stack.wait_phase(namespace, name, "Open")["status"]["sessionId"]
    for name in names:
        event = stack.emulator.pay(sessions[name])["event"]["id"]
        time.sleep(random.uniform(0, 2.5))
        assert deliver(stack, event, path=f"/webhooks/stripe/ns/{namespace}/race",
                       secret=signing) == 200
    for name in names:
        obj = stack.wait_phase(namespace, name, "Paid")
        phases = [h["phase"] for h in obj["status"]["history"]]
        assert phases == ["Pending", "Open", "Paid"]
