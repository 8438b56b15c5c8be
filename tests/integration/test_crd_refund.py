"""The PaymentRefund CRD, and the PaymentSession's refund status, against a real
kube-apiserver.

The refund examples are accepted as written (the invalid ones are refused by
test_crd.py's `test_invalid_example_is_refused`), the whole spec is immutable whichever way
a client writes it, and the status schemas keep every field `RefundStatus.to_dict()` and
`Status.to_dict()` render (nothing pruned; null clears), so what the operator and the webhook
write is what they read back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube.api.refunds import (
    MAX_REFUNDS_PER_SESSION,
    REFUND_REASONS,
    RefundHistoryEntry,
    RefundStatus,
    RefundUnconfirmed,
)
from paykube.api.types import (
    Condition,
    ErrorInfo,
    Phase,
    ProviderRef,
    RefundPhase,
    RefundRecord,
    Source,
    Status,
)
from paykube_dev.kube import ControlPlane
from tests.integration.test_crd import EXAMPLES, INVALID, SIMPLE, apply
from tests.plugins.kube_fixtures import refused

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

REFUNDS = EXAMPLES / "refunds"  # apart: applied with the sessions, they would find them unpaid
PARTIAL = REFUNDS / "paymentrefund-partial.yaml"
FULL = REFUNDS / "paymentrefund-full.yaml"
REFUND_EXAMPLES = sorted(REFUNDS.glob("paymentrefund-*.yaml"))
IMMUTABLE = "spec is immutable: create a new PaymentRefund"
AT = "2026-11-29T12:00:00Z"


@pytest.fixture
def namespace(unmanaged_namespace: str) -> str:
    """Objects here must not be touched by the shared test operator."""
    return unmanaged_namespace


def manifest(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def get(kube: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    got = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json")
    obj: dict[str, Any] = json.loads(got.stdout)
    return obj


def patch_status(kube: ControlPlane, namespace: str, kind: str, name: str,
                 status: dict[str, Any], *, check: bool = True) -> Any:
    return kube.kubectl("patch", kind, name, "-n", namespace, "--subresource=status",
                        "--type=merge", "-p", json.dumps({"status": status}), check=check)


def without_nulls(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def full_refund_status() -> RefundStatus:
    """Every field RefundStatus renders, set."""
    return RefundStatus(
        phase=RefundPhase.SUCCEEDED, provider="stripe", account="acct_1Refunds",
        livemode=False, session_uid="6f1c2d3e-0000-4000-8000-000000000001",
        provider_ref=ProviderRef("PaymentProvider", "stripe"),
        payment_id="pi_3Refunds", refund_id="re_3Refunds", amount=500, currency="usd",
        provider_status="succeeded", failure_reason="unknown",
        unconfirmed=RefundUnconfirmed(RefundPhase.FAILED, "evt_1Failed", AT),
        observed_generation=1,
        conditions=(Condition("Ready", "True", "Succeeded", "refunded", AT, 1),
                    Condition("Synced", "True", "Synced", "in sync", AT)),
        error=ErrorInfo("ProviderRejected", "no", provider_code="charge_already_refunded",
                        doc_url="https://stripe.com/docs/error-codes", explanation="why",
                        retryable=False, param="amount", type="invalid_request_error"),
        history=(RefundHistoryEntry(RefundPhase.PENDING, AT, Source.OPERATOR, None, True),
                 RefundHistoryEntry(RefundPhase.SUCCEEDED, AT, Source.WEBHOOK,
                                    "evt_1Succeeded", False)),
    )


def test_refund_examples_are_present() -> None:
    assert REFUND_EXAMPLES == [FULL, PARTIAL]
    invalid = [p for p in INVALID if manifest(p)["kind"] == "PaymentRefund"]
    assert len(invalid) >= 10
    assert manifest(PARTIAL)["spec"]["reason"] in REFUND_REASONS


@pytest.mark.parametrize("path", REFUND_EXAMPLES, ids=lambda p: p.stem)
def test_refund_example_is_accepted_as_written(kube: ControlPlane, namespace: str,
                                               path: Path) -> None:
    apply(kube, namespace, path.read_text())
    body = manifest(path)
    got = get(kube, namespace, "paymentrefund", body["metadata"]["name"])
    # No defaults added and nothing pruned: absent amount stays absent (the whole rest).
    assert got["spec"] == body["spec"]
    assert "status" not in got


def test_refund_spec_is_immutable_whichever_way_it_is_written(kube: ControlPlane,
                                                              namespace: str) -> None:
    original = PARTIAL.read_text()
    apply(kube, namespace, original)
    name = "order-1001-shipping"
    before = get(kube, namespace, "payref", name)

    # kubectl apply (server-side) of a changed amount, reason, session and metadata.
    for old, new in (("amount: 500", "amount: 600"),
                     ("reason: requested_by_customer", "reason: fraudulent"),
                     ("name: order-1001\n", "name: order-1002\n"),
                     ("ticket: SUP-4411", "ticket: SUP-4412")):
        changed = original.replace(old, new)
        assert changed != original
        refused(apply(kube, namespace, changed, check=False), IMMUTABLE)
    # A merge patch adding, changing or removing a field.
    for spec in ({"amount": 1}, {"metadata": None}, {"metadata": {"extra": "1"}},
                 {"reason": None}):
        refused(kube.kubectl("patch", "paymentrefund", name, "-n", namespace, "--type=merge",
                             "-p", json.dumps({"spec": spec}), check=False), IMMUTABLE)
    # An update (PUT) of the whole object.
    replaced = {**before, "spec": {**before["spec"], "amount": 400}}
    refused(kube.kubectl("replace", "-f", "-", input=json.dumps(replaced), check=False),
            IMMUTABLE)
    assert get(kube, namespace, "payref", name)["spec"] == before["spec"]

    # The full refund (no amount) cannot be given one later.
    apply(kube, namespace, FULL.read_text())
    refused(kube.kubectl("patch", "paymentrefund", "order-1001-full", "-n", namespace,
                         "--type=merge", "-p", json.dumps({"spec": {"amount": 100}}),
                         check=False), IMMUTABLE)

    # What stays writable: the unchanged manifest again, labels, and the status.
    apply(kube, namespace, original)
    kube.kubectl("label", "paymentrefund", name, "-n", namespace, "team=support")
    patch_status(kube, namespace, "paymentrefund", name, {"phase": "Pending"})
    after = get(kube, namespace, "payref", name)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] == 1


def test_refund_status_keeps_every_field_the_operator_renders(kube: ControlPlane,
                                                              namespace: str) -> None:
    apply(kube, namespace, PARTIAL.read_text())
    name = "order-1001-shipping"
    status = full_refund_status()
    # A field added to RefundStatus fails here until full_refund_status() sets it, and then
    # below until the CRD declares it (the API server would prune it).
    assert all(value is not None for value in status.to_dict().values())
    patch_status(kube, namespace, "paymentrefund", name, status.to_dict())
    got = get(kube, namespace, "paymentrefund", name)["status"]
    assert got == status.to_dict()
    assert RefundStatus.from_dict(got) == status

    # Cleared fields are rendered as null: a merge patch removes them.
    cleared = status.with_changes(unconfirmed=None, error=None, failure_reason=None)
    patch_status(kube, namespace, "paymentrefund", name, cleared.to_dict())
    got = get(kube, namespace, "paymentrefund", name)["status"]
    assert got == without_nulls(cleared.to_dict())
    assert RefundStatus.from_dict(got) == cleared

    # A whole-status write (PUT) with the nulls is accepted too (the fields are nullable).
    fresh = RefundStatus()
    obj = get(kube, namespace, "paymentrefund", name)
    obj["status"] = fresh.to_dict()
    kube.kubectl("replace", "--subresource=status", "-f", "-", input=json.dumps(obj))
    got = get(kube, namespace, "paymentrefund", name)["status"]
    assert without_nulls(got) == without_nulls(fresh.to_dict())
    assert RefundStatus.from_dict(got) == fresh


@pytest.mark.parametrize(("status", "message"), [
    ({"phase": "Refunded"}, 'status.phase: Unsupported value: "Refunded"'),
    ({"unconfirmed": {"phase": "Succeeded", "at": AT}},
     'status.unconfirmed.phase: Unsupported value: "Succeeded"'),
    ({"history": [{"phase": "Paid", "at": AT, "source": "operator"}]},
     'status.history[0].phase: Unsupported value: "Paid"'),
    ({"amount": -1}, "status.amount: Invalid value: -1"),
], ids=["phase", "unconfirmed", "history", "amount"])
def test_refund_status_refuses_what_no_writer_renders(
        kube: ControlPlane, namespace: str, status: dict[str, Any], message: str) -> None:
    apply(kube, namespace, PARTIAL.read_text())
    refused(patch_status(kube, namespace, "paymentrefund", "order-1001-shipping", status,
                         check=False), message)


def table(text: str, columns: list[str]) -> dict[str, dict[str, str]]:
    """`kubectl get` output as {name: {column: value}}, cut at the header's column starts
    (an empty value is blank, and "REFUND ID" is one column of two words)."""
    header, *lines = text.splitlines()
    starts = [header.index(column) for column in columns]
    assert starts == sorted(starts) and header.split() == " ".join(columns).split(), header
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [{c: line[a:b].strip() for c, (a, b) in zip(columns, bounds, strict=True)}
            for line in lines]
    return {row["NAME"]: row for row in rows}


def paid_session(kube: ControlPlane, namespace: str) -> str:
    apply(kube, namespace, SIMPLE.read_text())
    patch_status(kube, namespace, "paymentsession", "order-1001", Status(
        phase=Phase.PAID, session_id="cs_test_refunds", payment_intent_id="pi_3Refunds",
        amount_total=1999, currency="usd").to_dict())
    return "order-1001"


def record(i: int, amount: int = 1, phase: RefundPhase = RefundPhase.PENDING) -> RefundRecord:
    return RefundRecord(f"refund-{i}", f"00000000-0000-4000-8000-{i:012d}", amount, phase,
                        f"re_{i}" if phase is not RefundPhase.PENDING else None)


def test_session_status_keeps_its_refunds(kube: ControlPlane, namespace: str) -> None:
    name = paid_session(kube, namespace)
    current = Status.from_dict(get(kube, namespace, "paymentsession", name)["status"])
    refunded = current.with_changes(
        amount_refunded=700,
        refunds=(record(1, 500, RefundPhase.SUCCEEDED), record(2, 200)),
        conditions=(Condition("Refunded", "False", "PartiallyRefunded", "700 of 1999", AT),))
    patch_status(kube, namespace, "paymentsession", name, refunded.to_dict())
    got = get(kube, namespace, "paymentsession", name)["status"]
    assert got == without_nulls(refunded.to_dict())
    assert Status.from_dict(got) == refunded
    wide = table(kube.kubectl("get", "paysess", name, "-n", namespace, "-o", "wide").stdout,
                 ["NAME", "PHASE", "AMOUNT", "REFUNDED", "CURRENCY", "SESSION", "AGE", "URL",
                  "EXPIRES", "PROVIDER"])
    assert (wide[name]["PHASE"], wide[name]["AMOUNT"], wide[name]["REFUNDED"]) == (
        "Paid", "1999", "700")

    # The same refund reserved twice is refused by the API server itself ...
    twice = refunded.with_changes(refunds=(*refunded.refunds, record(1, 500)))
    refused(patch_status(kube, namespace, "paymentsession", name, twice.to_dict(),
                         check=False), "status.refunds[2]: Duplicate value")
    # ... and so is a 51st record (the operator refuses it first: TooManyRefunds).
    many = refunded.with_changes(refunds=tuple(record(i) for i in range(
        MAX_REFUNDS_PER_SESSION + 1)))
    refused(patch_status(kube, namespace, "paymentsession", name, many.to_dict(),
                         check=False), "status.refunds: Too many: 51: must have at most 50 items")
    refused(patch_status(kube, namespace, "paymentsession", name,
                         {"refunds": [{"name": "r", "uid": "u", "amount": 1, "phase": "Paid"}]},
                         check=False), 'status.refunds[0].phase: Unsupported value: "Paid"')
    assert Status.from_dict(get(kube, namespace, "paymentsession", name)["status"]) == refunded

    # Cleared (null) refund fields go away.
    patch_status(kube, namespace, "paymentsession", name, current.to_dict())
    got = get(kube, namespace, "paymentsession", name)["status"]
    assert "refunds" not in got and "amountRefunded" not in got
    assert Status.from_dict(got) == current


def test_refund_printer_columns_and_selectors(kube: ControlPlane, namespace: str) -> None:
    for path in REFUND_EXAMPLES:
        apply(kube, namespace, path.read_text())
    patch_status(kube, namespace, "paymentrefund", "order-1001-shipping", RefundStatus(
        phase=RefundPhase.SUCCEEDED, refund_id="re_3Printer", amount=500,
        currency="usd").to_dict())
    patch_status(kube, namespace, "paymentrefund", "order-1001-full", RefundStatus(
        phase=RefundPhase.FAILED, error=ErrorInfo("SessionNotPaid", "not paid")).to_dict())

    narrow = ["NAME", "SESSION", "AMOUNT", "PHASE", "REFUND ID", "AGE"]
    rows = table(kube.kubectl("get", "payref", "-n", namespace).stdout, narrow)
    assert [rows["order-1001-shipping"][c] for c in narrow[1:5]] == [
        "order-1001", "500", "Succeeded", "re_3Printer"]
    assert [rows["order-1001-full"][c] for c in narrow[1:5]] == ["order-1001", "", "Failed", ""]

    wide = [*narrow, "CURRENCY", "REASON", "ERROR"]
    rows = table(kube.kubectl("get", "payref", "-n", namespace, "-o", "wide").stdout, wide)
    assert [rows["order-1001-shipping"][c] for c in wide[-3:]] == [
        "usd", "requested_by_customer", ""]
    assert [rows["order-1001-full"][c] for c in wide[-3:]] == [
        "", "duplicate", "SessionNotPaid"]

    # A session's refunds by field selector (the operator's and a user's query), and the
    # payments category lists refunds beside sessions.
    selected = kube.kubectl("get", "payref", "-n", namespace, "-o", "name",
                            "--field-selector", "spec.sessionRef.name=order-1001").stdout
    assert sorted(selected.split()) == [
        "paymentrefund.payments.paykube.dev/order-1001-full",
        "paymentrefund.payments.paykube.dev/order-1001-shipping"]
    assert kube.kubectl("get", "payref", "-n", namespace, "-o", "name", "--field-selector",
                        "spec.sessionRef.name=order-1002").stdout == ""
    failed = kube.kubectl("get", "payref", "-n", namespace, "-o", "name",
                          "--field-selector", "status.phase=Failed").stdout.split()
    assert failed == ["paymentrefund.payments.paykube.dev/order-1001-full"]
    apply(kube, namespace, SIMPLE.read_text())
    listed = kube.kubectl("get", "payments", "-n", namespace, "-o", "name").stdout.split()
    assert "paymentsession.payments.paykube.dev/order-1001" in listed
    assert "paymentrefund.payments.paykube.dev/order-1001-shipping" in listed


def test_explain_teaches_the_refund_spec(kube: ControlPlane) -> None:
    # The CRD's OpenAPI document is published shortly after the CRD is established.
    deadline = time.monotonic() + 30
    while True:
        result = kube.kubectl("explain", "paymentrefund.spec.amount", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    assert "refundable rest" in result.stdout
    reason = kube.kubectl("explain", "paymentrefund.spec.reason").stdout
    assert "requested_by_customer" in reason


def test_every_refund_schema_field_has_a_description() -> None:
    crd = yaml.safe_load((EXAMPLES.parent / "paymentrefund.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if path not in (".metadata",) and not node.get("description"):
            missing.append(path or ".")
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[]")

    walk(schema, "")
    assert missing == []
