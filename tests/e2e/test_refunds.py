"""Refunds through the real operator, webhook, control plane and Stripe emulator."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text

from paykube.mirror.store import make_engine
from paykube_dev.services import ActiveMQ, MariaDB
from tests.plugins.paykube_fixtures import EVENTS_QUEUE, Manifest, Stack, solo_operator
from tests.plugins.stomp_helpers import subscriber

REFUND_API = "payments.paykube.dev/v1alpha1"


def paid_session(stack: Stack, namespace: str, name: str, amount: int = 4200) -> Manifest:
    stack.apply(namespace, name, amount=amount)
    opened = stack.wait_phase(namespace, name, "Open")
    stack.emulator.pay(opened["status"]["sessionId"])
    return stack.wait_phase(namespace, name, "Paid")


def apply_refund(stack: Stack, namespace: str, name: str, session: str,
                 amount: int | None = None, **spec: Any) -> None:
    body: dict[str, Any] = {"apiVersion": REFUND_API, "kind": "PaymentRefund",
                            "metadata": {"name": name, "namespace": namespace},
                            "spec": {"sessionRef": {"name": session}, **spec}}
    if amount is not None:
        body["spec"]["amount"] = amount
    stack.kube.kubectl("apply", "-f", "-", input=json.dumps(body))


def get_refund(stack: Stack, namespace: str, name: str) -> Manifest:
    out = stack.kube.kubectl("get", "paymentrefund", name, "-n", namespace, "-o", "json")
    result: Manifest = json.loads(out.stdout)
    return result


def wait_refund(stack: Stack, namespace: str, name: str, phase: str,
                timeout: float = 120.0) -> Manifest:
    deadline = time.monotonic() + timeout
    obj: Manifest = {}
    while time.monotonic() < deadline:
        obj = get_refund(stack, namespace, name)
        if obj.get("status", {}).get("phase") == phase:
            return obj
        time.sleep(0.3)
    raise AssertionError(f"refund {namespace}/{name}: phase {phase} not reached in "
                         f"{timeout}s; last status: {json.dumps(obj.get('status'), indent=1)}")


def records_settled(obj: Manifest, count: int, refunded: int) -> bool:
    """The session records `count` refunds, all settled, and `refunded` in all (the
    amount may come from a webhook before the records do)."""
    status = obj.get("status", {})
    records = status.get("refunds") or []
    return (len(records) == count and status.get("amountRefunded") == refunded
            and all(r["phase"] in ("Succeeded", "Failed", "Canceled") for r in records))


def condition(obj: Manifest, type_: str) -> dict[str, Any] | None:
    return next((c for c in obj["status"].get("conditions") or () if c["type"] == type_),
                None)


def wait_refunded(stack: Stack, namespace: str, name: str, amount: int) -> Manifest:
    return stack.wait_for(namespace, name,
                          lambda o: o.get("status", {}).get("amountRefunded") == amount,
                          timeout=120.0, what=f"amountRefunded {amount}")


def test_partial_then_full_refund_keep_the_session_paid(stack: Stack, namespace: str) -> None:
    session = paid_session(stack, namespace, "order-1", amount=4200)
    intent = session["status"]["paymentIntentId"]
    apply_refund(stack, namespace, "shipping", "order-1", amount=500,
                 reason="requested_by_customer", metadata={"ticket": "SUP-1"})
    first = wait_refund(stack, namespace, "shipping", "Succeeded")
    assert first["status"]["amount"] == 500
    assert first["status"]["refundId"].startswith("re_")
    partly = wait_refunded(stack, namespace, "order-1", 500)
    assert partly["status"]["phase"] == "Paid"
    refunded = condition(partly, "Refunded")
    assert refunded is not None
    assert (refunded["status"], refunded["reason"]) == ("False", "PartiallyRefunded")
    # Without an amount: the whole rest.
    apply_refund(stack, namespace, "the-rest", "order-1")
    rest = wait_refund(stack, namespace, "the-rest", "Succeeded")
    assert rest["status"]["amount"] == 3700
    full = stack.wait_for(namespace, "order-1", lambda o: records_settled(o, 2, 4200),
                          timeout=120.0, what="both records settled, 4200 refunded")
    assert full["status"]["phase"] == "Paid"
    refunded = condition(full, "Refunded")
    assert refunded is not None and (refunded["status"], refunded["reason"]) == (
        "True", "FullyRefunded")
    records = {r["name"]: r for r in full["status"]["refunds"]}
    assert {n: (r["amount"], r["phase"]) for n, r in records.items()} == {
        "shipping": (500, "Succeeded"), "the-rest": (3700, "Succeeded")}
    at_stripe = stack.emulator.refunds(intent)
    assert sorted(r["amount"] for r in at_stripe) == [500, 3700]
    assert {r["metadata"].get("paykube_name") for r in at_stripe} == {"shipping", "the-rest"}
    assert next(r for r in at_stripe if r["amount"] == 500)["metadata"]["ticket"] == "SUP-1"


def test_refusals_before_any_provider_call(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, "still-open")
    stack.wait_phase(namespace, "still-open", "Open")
    apply_refund(stack, namespace, "too-early", "still-open", amount=100)
    early = wait_refund(stack, namespace, "too-early", "Failed")
    assert early["status"]["error"]["code"] == "SessionNotPaid"
    assert "refundId" not in early["status"] or early["status"]["refundId"] is None

    session = paid_session(stack, namespace, "small", amount=1000)
    apply_refund(stack, namespace, "too-much", "small", amount=1001)
    much = wait_refund(stack, namespace, "too-much", "Failed")
    assert much["status"]["error"]["code"] == "AmountExceedsRefundable"
    assert "1000" in much["status"]["error"]["message"]

    apply_refund(stack, namespace, "nobody", "no-such-session", amount=1)
    nobody = wait_refund(stack, namespace, "nobody", "Failed")
    assert nobody["status"]["error"]["code"] == "SessionNotFound"
    ready = condition(nobody, "Ready")
    assert ready is not None and ready["reason"] == "SessionNotFound"
    assert stack.emulator.refunds(session["status"]["paymentIntentId"]) == []


def test_two_refunds_racing_for_the_same_rest_exactly_one_succeeds(stack: Stack,
                                                                   namespace: str) -> None:
    session = paid_session(stack, namespace, "contested", amount=2000)
    intent = session["status"]["paymentIntentId"]
    apply_refund(stack, namespace, "part", "contested", amount=1200)
    wait_refund(stack, namespace, "part", "Succeeded")
    # Both ask for the last 800 at once.
    racers = [threading.Thread(target=apply_refund,
                               args=(stack, namespace, name, "contested", 800))
              for name in ("racer-a", "racer-b")]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join()
    phases = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        phases = {n: get_refund(stack, namespace, n).get("status", {}).get("phase")
                  for n in ("racer-a", "racer-b")}
        if all(p in ("Succeeded", "Failed") for p in phases.values()):
            break
        time.sleep(0.3)
    assert sorted(phases.values()) == ["Failed", "Succeeded"], phases
    loser = next(n for n, p in phases.items() if p == "Failed")
    assert get_refund(stack, namespace, loser)["status"]["error"]["code"] == \
        "AmountExceedsRefundable"
    assert sorted(r["amount"] for r in stack.emulator.refunds(intent)) == [800, 1200]
    assert wait_refunded(stack, namespace, "contested", 2000)["status"]["phase"] == "Paid"


def history(obj: Manifest) -> list[tuple[str, str]]:
    return [(h["phase"], h["source"]) for h in obj["status"]["history"]]


def test_async_refunds_go_pending_then_succeed_or_fail(stack: Stack, namespace: str) -> None:
    session = paid_session(stack, namespace, "slow-bank", amount=3000)
    intent = session["status"]["paymentIntentId"]
    stack.emulator.refund_mode("pending", intent)
    apply_refund(stack, namespace, "later", "slow-bank", amount=1000)
    pending = wait_for_refund(stack, namespace, "later",
                              lambda s: bool(s.get("refundId")), "a refund id")
    assert pending["status"]["phase"] == "Pending"
    assert pending["status"]["providerStatus"] == "pending"
    moved = stack.emulator.refund_transition(pending["status"]["refundId"], "succeeded")
    done = wait_refund(stack, namespace, "later", "Succeeded")
    # The webhook took it (or found it taken by a poll that ran first, on a busy machine).
    assert history(done)[-1][0] == "Succeeded"
    assert accepted_by_webhook(moved)

    apply_refund(stack, namespace, "bounced", "slow-bank", amount=500)
    bounced = wait_for_refund(stack, namespace, "bounced",
                              lambda s: bool(s.get("refundId")), "a refund id")
    reported = stack.emulator.refund_transition(bounced["status"]["refundId"], "failed",
                                                failure_reason="lost_or_stolen_card")
    failed = wait_refund(stack, namespace, "bounced", "Failed")
    # The webhook's report waited for the operator's retrieve, which agreed: credited to it
    # (unless a poll saw the failure before the report arrived).
    assert history(failed)[-1][0] == "Failed"
    assert accepted_by_webhook(reported)
    assert failed["status"]["error"]["code"] == "RefundFailed"
    assert failed["status"]["failureReason"] == "lost_or_stolen_card"
    assert failed["status"].get("unconfirmed") is None
    after = stack.wait_for(namespace, "slow-bank", lambda o: records_settled(o, 2, 1000),
                           timeout=120.0, what="both records settled, 1000 refunded")
    records = {r["name"]: r["phase"] for r in after["status"]["refunds"]}
    assert records == {"later": "Succeeded", "bounced": "Failed"}
    # The failed 500 is refundable again.
    apply_refund(stack, namespace, "retry", "slow-bank")
    reserved = wait_for_refund(stack, namespace, "retry",
                               lambda s: s.get("amount") is not None, "its reservation")
    assert reserved["status"]["amount"] == 2000


def accepted_by_webhook(moved: dict[str, Any]) -> bool:
    """Every delivery of the change was answered 200 and not ignored: the webhook bound the
    event to its refund (applied, awaiting the operator's confirmation, or already there)."""
    outcomes = [json.loads(d["response_body"])["outcome"] for d in moved["deliveries"]
                if d["ok"]]
    return bool(outcomes) and all(
        o in ("applied", "awaiting_confirmation", "duplicate") for o in outcomes)


def wait_for_refund(stack: Stack, namespace: str, name: str,
                    check: Any, what: str, timeout: float = 120.0) -> Manifest:
    deadline = time.monotonic() + timeout
    obj: Manifest = {}
    while time.monotonic() < deadline:
        obj = get_refund(stack, namespace, name)
        if check(obj.get("status") or {}):
            return obj
        time.sleep(0.3)
    raise AssertionError(f"refund {namespace}/{name}: {what} not reached in {timeout}s; "
                         f"last status: {json.dumps(obj.get('status'), indent=1)}")


def test_a_refund_made_in_the_dashboard_appears_on_the_session(stack: Stack,
                                                               namespace: str) -> None:
    session = paid_session(stack, namespace, "elsewhere", amount=5000)
    intent = session["status"]["paymentIntentId"]
    stack.emulator.dashboard_refund(intent, 700)
    seen = wait_refunded(stack, namespace, "elsewhere", 700)
    assert seen["status"].get("refunds") in (None, [])  # not one of paykube's refunds
    # paykube's refund of "the rest" knows about the Dashboard's refund.
    apply_refund(stack, namespace, "remainder", "elsewhere")
    assert wait_refund(stack, namespace, "remainder", "Succeeded")["status"]["amount"] == 4300
    assert wait_refunded(stack, namespace, "elsewhere", 5000)["status"]["phase"] == "Paid"


def signed_post(stack: Stack, route: str, event: dict[str, Any], secret: str) -> Any:
    import httpx

    from paykube_dev.stripe_emulator import sign_payload

    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": sign_payload(body, secret, int(time.time())),
               "Content-Type": "application/json"}
    return httpx.post(f"{stack.webhook.url}{route}", content=body, headers=headers,
                      timeout=30)


def test_duplicated_reordered_and_contradicting_refund_webhooks(stack: Stack,
                                                                namespace: str) -> None:
    from tests.plugins.paykube_fixtures import WEBHOOK_SECRET

    session = paid_session(stack, namespace, "noisy", amount=2500)
    intent = session["status"]["paymentIntentId"]
    stack.emulator.refund_mode("pending", intent)
    apply_refund(stack, namespace, "echo", "noisy", amount=900)
    pending = wait_for_refund(stack, namespace, "echo", lambda s: bool(s.get("refundId")),
                              "a refund id")
    refund_id = pending["status"]["refundId"]
    stack.emulator.refund_transition(refund_id, "succeeded")
    done = wait_refund(stack, namespace, "echo", "Succeeded")
    events = {e["type"]: e for e in stack.emulator.events()
              if e["data"]["object"].get("id") == refund_id}
    assert {"refund.created", "refund.updated"} <= set(events)
    # The old `created` (pending) again, after `updated` (succeeded): nothing moves back.
    for event in (events["refund.created"], events["refund.updated"]):
        answer = signed_post(stack, "/webhooks/stripe", event, WEBHOOK_SECRET)
        assert answer.status_code == 200
        assert answer.json()["outcome"] == "duplicate"
    assert get_refund(stack, namespace, "echo")["status"]["phase"] == "Succeeded"
    # A signed `refund.failed` that Stripe does not back: held for the operator's retrieve,
    # which says succeeded; the refund stays Succeeded (no invitation to refund twice).
    failed_object = {**events["refund.updated"]["data"]["object"], "status": "failed",
                     "failure_reason": "unknown"}
    forged = {**events["refund.updated"], "id": "evt_forged_refund_failed",
              "type": "refund.failed", "data": {"object": failed_object}}
    answer = signed_post(stack, "/webhooks/stripe", forged, WEBHOOK_SECRET)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "awaiting_confirmation"
    settled = wait_for_refund(stack, namespace, "echo",
                              lambda s: s.get("unconfirmed") is None, "the retrieve")
    assert settled["status"]["phase"] == "Succeeded"
    assert history(settled) == history(done)
    assert wait_refunded(stack, namespace, "noisy", 900)["status"]["amountRefunded"] == 900


def solo_paid(stack: Stack, solo: Any, name: str, amount: int = 4000) -> Manifest:
    """A Paid session under a solo operator (no webhook endpoint: its poll sees the pay)."""
    stack.apply(solo.namespace, name, amount=amount)
    opened = stack.wait_phase(solo.namespace, name, "Open", timeout=120)
    solo.emulator.pay(opened["status"]["sessionId"])
    return stack.wait_phase(solo.namespace, name, "Paid", timeout=120)


def test_crash_between_refund_create_and_status_write_makes_one_refund(
        stack: Stack, tmp_path: Path) -> None:
    """kill -9 the operator while the emulator holds the refund's create response."""
    with solo_operator(stack, tmp_path) as solo:
        session = solo_paid(stack, solo, "crash-refund")
        intent = session["status"]["paymentIntentId"]
        solo.emulator.add_fault("hold", count=1, method="POST", path="/v1/refunds")
        apply_refund(stack, solo.namespace, "once", "crash-refund", amount=1500)
        solo.emulator.wait_for_held(1)
        assert len(solo.emulator.refunds(intent)) == 1  # created; the answer is held
        solo.operator.kill()
        solo.emulator.release()
        assert get_refund(stack, solo.namespace, "once")["status"].get("refundId") is None
        solo.restart_operator()
        done = wait_refund(stack, solo.namespace, "once", "Succeeded", timeout=120)
        at_stripe = solo.emulator.refunds(intent)
        assert [r["id"] for r in at_stripe] == [done["status"]["refundId"]]
        assert at_stripe[0]["amount"] == 1500


def test_refunds_converge_through_429s_and_500s(stack: Stack, tmp_path: Path) -> None:
    count = 6
    with solo_operator(stack, tmp_path) as solo:
        intents = {f"faulty-{i}": solo_paid(stack, solo, f"faulty-{i}", amount=1000 + i)
                   ["status"]["paymentIntentId"] for i in range(count)}
        solo.emulator.add_fault("rate_limit", count=None, probability=0.15, retry_after=1)
        solo.emulator.add_fault("api_error", count=None, probability=0.18)
        for name in intents:
            apply_refund(stack, solo.namespace, f"{name}-back", name)
        for i, (name, intent) in enumerate(intents.items()):
            done = wait_refund(stack, solo.namespace, f"{name}-back", "Succeeded", timeout=180)
            assert done["status"]["amount"] == 1000 + i
            assert [r["id"] for r in solo.emulator.refunds(intent)] == [
                done["status"]["refundId"]]
        requests = [r for r in solo.emulator.requests() if r["path"].startswith("/v1/refunds")]
        assert any(r["fault"] for r in requests), "the faults really hit refund calls"


def test_deleting_a_pending_refund_waits_for_the_provider(stack: Stack, namespace: str) -> None:
    session = paid_session(stack, namespace, "undeletable", amount=1800)
    stack.emulator.refund_mode("pending", session["status"]["paymentIntentId"])
    apply_refund(stack, namespace, "in-flight", "undeletable", amount=800)
    pending = wait_for_refund(stack, namespace, "in-flight", lambda s: bool(s.get("refundId")),
                              "a refund id")
    stack.kube.kubectl("delete", "paymentrefund", "in-flight", "-n", namespace, "--wait=false")
    time.sleep(2.0)
    held = get_refund(stack, namespace, "in-flight")
    assert held["metadata"].get("deletionTimestamp") and held["metadata"].get("finalizers")
    stack.emulator.refund_transition(pending["status"]["refundId"], "succeeded")
    gone_deadline = time.monotonic() + 150
    while time.monotonic() < gone_deadline:
        result = stack.kube.kubectl("get", "paymentrefund", "in-flight", "-n", namespace,
                                    check=False)
        if result.returncode != 0:
            break
        time.sleep(0.5)
    assert "NotFound" in result.stderr
    # The money stays refunded, and the session keeps the record.
    after = stack.wait_for(namespace, "undeletable", lambda o: records_settled(o, 1, 800),
                           timeout=120.0, what="the record settled, 800 refunded")
    assert [(r["name"], r["phase"]) for r in after["status"]["refunds"]] == [
        ("in-flight", "Succeeded")]


def test_each_refund_phase_reaches_the_bus_and_the_mirror(
        stack: Stack, tmp_path: Path, mariadb: MariaDB, activemq: ActiveMQ) -> None:
    url = mariadb.create_database(f"refunds_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    with solo_operator(stack, tmp_path, PAYKUBE_DATABASE_URL=url) as solo, \
            subscriber(activemq, EVENTS_QUEUE) as sub:
        session = solo_paid(stack, solo, "mirrored", amount=2600)
        intent = session["status"]["paymentIntentId"]
        solo.emulator.refund_mode("pending", intent)
        apply_refund(stack, solo.namespace, "good", "mirrored", amount=600)
        apply_refund(stack, solo.namespace, "bad", "mirrored", amount=400)
        ids = {}
        for name in ("good", "bad"):
            ids[name] = wait_for_refund(stack, solo.namespace, name,
                                        lambda s: bool(s.get("refundId")),
                                        "a refund id")["status"]["refundId"]
        solo.emulator.refund_transition(ids["good"], "succeeded")
        solo.emulator.refund_transition(ids["bad"], "failed", failure_reason="unknown")
        good = wait_refund(stack, solo.namespace, "good", "Succeeded")
        bad = wait_refund(stack, solo.namespace, "bad", "Failed")
        uids = {good["metadata"]["uid"]: "good", bad["metadata"]["uid"]: "bad"}

        seen: dict[str, list[str]] = {"good": [], "bad": []}
        deadline = time.monotonic() + 120
        while (len(seen["good"]) < 2 or len(seen["bad"]) < 2) and \
                time.monotonic() < deadline:
            body = json.loads(sub.get(timeout=max(deadline - time.monotonic(), 0.1)).body)
            if body["type"].startswith("dev.paykube.paymentrefund.") and \
                    body["data"]["uid"] in uids:
                seen[uids[body["data"]["uid"]]].append(body["type"].rsplit(".", 1)[1])
                if body["type"].endswith(".failed"):
                    assert body["data"]["error"]["code"] == "RefundFailed"
                    assert "message" not in body["data"]["error"]
        assert sorted(seen["good"]) == ["pending", "succeeded"]
        assert sorted(seen["bad"]) == ["failed", "pending"]

        def mirrored() -> dict[str, Any] | None:
            with engine.connect() as db:
                rows = {r.name: r for r in db.execute(text(
                    "SELECT name, phase, amount, refund_id FROM payment_refunds "
                    "WHERE namespace = :ns"), {"ns": solo.namespace})}
                transitions = sorted((r.uid, r.phase) for r in db.execute(text(
                    "SELECT uid, phase FROM payment_refund_transitions WHERE uid IN "
                    "(:a, :b)"), {"a": good["metadata"]["uid"], "b": bad["metadata"]["uid"]}))
                ledger = sorted((r.kind, r.phase, int(r.amount)) for r in db.execute(text(
                    "SELECT kind, phase, amount FROM payment_ledger WHERE namespace = :ns"),
                    {"ns": solo.namespace}))
            if {n: r.phase for n, r in rows.items()} != {"good": "Succeeded", "bad": "Failed"}:
                return None
            return {"rows": rows, "transitions": transitions, "ledger": ledger}

        found = None
        deadline = time.monotonic() + 120
        while found is None and time.monotonic() < deadline:
            found = mirrored()
            time.sleep(0.5)
        assert found is not None, "the mirror did not reach the refunds' phases"
        assert found["rows"]["good"].refund_id == ids["good"]
        assert found["rows"]["good"].amount == 600
        assert len(found["transitions"]) == 4
        assert found["ledger"] == [("payment", "Paid", 2600), ("refund", "Succeeded", -600)]


def test_another_tenant_cannot_move_a_tenants_refund_or_its_refunded_amount(
        stack: Stack) -> None:
    """Tenant B signs, with its own account's secret, events naming tenant A's refund and
    A's payment: nothing of A's moves."""
    from tests.e2e.test_tenancy import make_tenant, open_for, post

    a, b = make_tenant(stack, "ra"), make_tenant(stack, "rb")
    try:
        opened = open_for(stack, a, "a-order")
        stack.emulator.pay(opened["status"]["sessionId"])
        paid = stack.wait_phase(a.namespace, "a-order", "Paid", timeout=120)
        apply_refund(stack, a.namespace, "a-refund", "a-order", amount=1000)
        refund = wait_refund(stack, a.namespace, "a-refund", "Succeeded", timeout=120)
        refund_id = refund["status"]["refundId"]
        session_before = wait_refunded(stack, a.namespace, "a-order", 1000)
        at_stripe = stack.emulator.refund(refund_id)
        failed = {**at_stripe, "status": "failed", "failure_reason": "unknown"}
        refund_failed = {"id": "evt_b_forges_refund", "object": "event",
                         "type": "refund.failed", "livemode": False,
                         "created": int(time.time()), "data": {"object": failed}}
        charge = {"id": "ch_bforged", "object": "charge", "amount": 199900,
                  "amount_refunded": 199900, "refunded": True, "currency": "usd",
                  "payment_intent": paid["status"]["paymentIntentId"], "livemode": False,
                  "metadata": {"paykube_namespace": a.namespace, "paykube_name": "a-order",
                               "paykube_uid": paid["metadata"]["uid"]}}
        charge_refunded = {"id": "evt_b_forges_charge", "object": "event",
                           "type": "charge.refunded", "livemode": False,
                           "created": int(time.time()), "data": {"object": charge}}
        for event in (refund_failed, charge_refunded):
            answer = post(stack, b.route, json.dumps(event).encode(), b.signing)
            assert answer.status_code == 200
            assert answer.json()["outcome"] == "ignored_wrong_account"
        time.sleep(1.0)
        after = get_refund(stack, a.namespace, "a-refund")
        assert after["status"]["phase"] == "Succeeded"
        assert after["status"].get("unconfirmed") is None
        session_after = stack.get(a.namespace, "a-order")
        assert session_after["status"]["amountRefunded"] == \
            session_before["status"]["amountRefunded"] == 1000
    finally:
        for tenant in (a, b):
            stack.kube.kubectl("delete", "namespace", tenant.namespace, "--wait=false",
                               check=False)


def test_an_old_session_crd_that_drops_the_reservation_refuses_before_any_refund(
        tmp_path: Path) -> None:
    """Helm does not upgrade CRDs: with last version's PaymentSession CRD the API server
    prunes status.refunds, and with it the lock against refunding the same money twice.
    The operator notices its reservation did not stick and refuses before the PSP call."""
    from paykube_dev.kube import REPO, ControlPlane
    from paykube_dev.programs import start_operator
    from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

    with ControlPlane.started(tmp_path / "kube") as plane, \
            EmulatorProcess(tmp_path / "emulator.log") as emulator:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            if crd.name != "paymentsession.yaml":
                plane.install_crd(crd)
        old = yaml.safe_load((REPO / "crds" / "paymentsession.yaml").read_text())
        status = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "status"]["properties"]
        del status["refunds"], status["amountRefunded"]
        old_crd = tmp_path / "old-paymentsession.yaml"
        old_crd.write_text(yaml.safe_dump(old))
        plane.install_crd(old_crd)
        plane.kubectl("create", "namespace", "t-old")
        operator = start_operator(plane.kubeconfig, tmp_path / "operator.log", {
            "PAYKUBE_STRIPE_API_BASE": emulator.base_url,
            "PAYKUBE_STRIPE_API_KEY": "sk_test_old_crd", "PAYKUBE_NAMESPACES": "t-old",
            "PAYKUBE_POLL_MIN_INTERVAL": "1", "PAYKUBE_POLL_MAX_INTERVAL": "2"})
        control = EmulatorControl(emulator.base_url)
        mini = Stack(plane, control, emulator.base_url, operator, operator, tmp_path)
        try:
            stack_paid = paid_session_by_poll(mini, control, "t-old", "legacy")
            apply_refund(mini, "t-old", "unsafe", "legacy", amount=100)
            refused = wait_refund(mini, "t-old", "unsafe", "Failed")
            assert refused["status"]["error"]["code"] == "ApiRejected"
            assert "crds/" in refused["status"]["error"]["message"]
            assert control.refunds(stack_paid["status"]["paymentIntentId"]) == []
        finally:
            operator.stop()


def paid_session_by_poll(stack: Stack, control: Any, namespace: str, name: str) -> Manifest:
    stack.apply(namespace, name)
    opened = stack.wait_phase(namespace, name, "Open")
    control.pay(opened["status"]["sessionId"])
    return stack.wait_phase(namespace, name, "Paid")


def test_hostile_refund_metadata_reaches_stripe_verbatim_and_changes_nothing_else(
        stack: Stack, namespace: str) -> None:
    """Values that would inject form fields, headers or markup if any layer built its own
    request: each reaches Stripe as the one metadata value it is, and the refund's amount,
    payment and paykube's own keys are the operator's."""
    session = paid_session(stack, namespace, "hostile-refund", amount=3000)
    intent = session["status"]["paymentIntentId"]
    hostile = {
        "form": "x&amount=2999&payment_intent=pi_other&metadata[paykube_name]=victim",
        "crlf": "a\r\nStripe-Account: acct_other\r\n\r\n{}",
        "markup": '<script>window.__pwned = 1</script><img src=x onerror="alert(1)">',
        "unicode": "caf\u00e9 \u202eevil\u202c \U0001f4b8 \t?",
        "encoded": "%26amount%3D1%0d%0a",
        "amount": "2999",
        "note.with.dots": "-" * 500,
    }
    apply_refund(stack, namespace, "hostile", "hostile-refund", amount=700, metadata=hostile)
    done = wait_refund(stack, namespace, "hostile", "Succeeded")
    assert done["status"]["amount"] == 700
    (at_stripe,) = stack.emulator.refunds(intent)
    assert at_stripe["amount"] == 700
    assert at_stripe["payment_intent"] == intent
    own = {k: v for k, v in at_stripe["metadata"].items() if not k.startswith("paykube_")}
    assert own == hostile
    assert at_stripe["metadata"]["paykube_name"] == "hostile"
    assert at_stripe["metadata"]["paykube_uid"] == done["metadata"]["uid"]
    after = wait_refunded(stack, namespace, "hostile-refund", 700)
    assert after["status"]["phase"] == "Paid"
