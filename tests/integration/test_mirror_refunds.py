"""PaymentRefunds in the mirror, against a real MariaDB (and, for resync and the watch, the
real control plane): one row per refund and phase, the money ledger (payments minus
refunds, a bank's return added back), idempotent and order-insensitive writes, deletion
flags, and the session's amount_refunded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from paykube.kube.client import KubeClient
from paykube.mirror.follow import follow
from paykube.mirror.migrate import migrate
from paykube.mirror.projection import REFUND, SESSION, project_refund, same_row
from paykube.mirror.resync import resync
from paykube.mirror.schema import payment_ledger
from paykube.mirror.store import MirrorStore, MirrorWriter, Sweep, make_engine
from paykube_dev.kube import ControlPlane
from paykube_dev.services import MariaDB

pytestmark = pytest.mark.integration

_RV = itertools.count(5000)
SESSION_UID = "5d1c7d0e-8a5b-4a57-9d0c-0c6b1f2e3a4b"


def session(uid: str = SESSION_UID, *, refunded: int | None = None, paid: bool = True,
            amount: int = 1999, currency: str = "usd") -> dict[str, Any]:
    phases = ["Pending", "Open", "Paid"] if paid else ["Pending", "Open"]
    status: dict[str, Any] = {
        "phase": phases[-1], "provider": "stripe", "sessionId": "cs_1",
        "history": [{"phase": p, "at": f"2026-11-20T10:0{i}:00Z", "source": "operator"}
                    for i, p in enumerate(phases)]}
    if paid:
        status |= {"paymentIntentId": "pi_1", "paymentStatus": "paid", "amountTotal": amount,
                   "currency": currency}
    if refunded is not None:
        status["amountRefunded"] = refunded
    return {"metadata": {"uid": uid, "name": "order-1001", "namespace": "shop",
                         "resourceVersion": str(next(_RV)),
                         "creationTimestamp": "2026-11-20T10:00:00Z"},
            "spec": {"amount": amount, "currency": currency, "successUrl": "https://s.example/",
                     "cancelUrl": "https://s.example/"},
            "status": status}


def refund(uid: str, phases: list[str], *, amount: int | None = 500, rv: int | None = None,
           name: str | None = None, reserved: bool = True, error: dict[str, Any] | None = None,
           currency: str = "usd") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phases[-1],
        "history": [{"phase": p, "at": f"2026-11-21T10:0{i}:00Z",
                     "source": "operator" if i == 0 else "webhook",
                     **({"eventId": f"evt_{i}"} if i else {})} for i, p in enumerate(phases)]}
    if reserved:
        status |= {"provider": "stripe", "sessionUid": SESSION_UID, "paymentId": "pi_1",
                   "amount": amount, "currency": currency}
        if len(phases) > 1 or phases[-1] != "Pending":
            status |= {"refundId": f"re_{uid[:8]}", "providerStatus": phases[-1].lower()}
    if error is not None:
        status["error"] = error
    if phases[-1] == "Failed" and "Succeeded" in phases:
        status["failureReason"] = "expired_or_canceled_card"
    return {"metadata": {"uid": uid, "name": name or f"refund-{uid[:8]}", "namespace": "shop",
                         "resourceVersion": str(rv if rv is not None else next(_RV)),
                         "creationTimestamp": "2026-11-21T10:00:00Z"},
            "spec": {"sessionRef": {"name": "order-1001"}, "amount": amount,
                     "reason": "requested_by_customer", "metadata": {"ticket": "SUP-1"}},
            "status": status}


def steps(uid: str, path: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    """The successive observations of one refund, one per phase, newer each time."""
    return [refund(uid, path[: i + 1], **kwargs) for i in range(len(path))]


def new_uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def engine(mariadb: MariaDB) -> Iterator[Engine]:
    url = mariadb.create_database(f"refunds_{uuid.uuid4().hex[:10]}")
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> MirrorStore:
    with engine.begin() as conn:
        for table in ("payment_ledger", "payment_refund_transitions", "payment_refunds",
                      "payment_session_transitions", "payment_sessions"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 -- constant names
    return MirrorStore(engine)


def assert_refund_mirrored(store: MirrorStore, latest: dict[str, Any]) -> dict[str, Any]:
    uid = latest["metadata"]["uid"]
    row = store.row(uid, REFUND)
    assert row is not None, uid
    proj = project_refund(latest)
    assert same_row(row, proj.row), {k: (row[k], v) for k, v in proj.row.items()
                                     if row[k] != v}
    assert [t["phase"] for t in store.transitions(uid, REFUND)] == [
        h["phase"] for h in latest["status"]["history"]]
    return row


def ledger_sum(store: MirrorStore, **where: Any) -> int:
    with store.engine.connect() as conn:
        query = select(func.coalesce(func.sum(payment_ledger.c.amount), 0))
        for column, value in where.items():
            query = query.where(payment_ledger.c[column] == value)
        return int(conn.execute(query).scalar_one())


# -- each phase ------------------------------------------------------------------------------


def test_each_phase_has_its_rows(store: MirrorStore) -> None:
    succeeded, canceled, refused, returned = new_uid(), new_uid(), new_uid(), new_uid()
    paths: dict[str, tuple[list[str], dict[str, Any]]] = {
        succeeded: (["Pending", "Succeeded"], {}),
        canceled: (["Pending", "RequiresAction", "Canceled"], {}),
        refused: (["Failed"], {"reserved": False, "amount": 99_999, "error": {
            "code": "AmountExceedsRefundable", "message": "only 1999 refundable",
            "retryable": False}}),
        returned: (["Pending", "Succeeded", "Failed"], {"amount": 300}),
    }
    for uid, (path, kwargs) in paths.items():
        for observation in steps(uid, path, **kwargs):
            store.upsert(observation, REFUND)
            mirrored = assert_refund_mirrored(store, observation)
            assert mirrored["phase"] == observation["status"]["phase"]

    row = store.row(succeeded, REFUND)
    assert row is not None
    assert (row["session_name"], row["session_uid"], row["refund_id"], row["payment_id"],
            row["amount"], row["requested_amount"], row["currency"], row["reason"],
            row["provider"]) == ("order-1001", SESSION_UID, f"re_{succeeded[:8]}", "pi_1",
                                 500, 500, "usd", "requested_by_customer", "stripe")
    refused_row = store.row(refused, REFUND)
    assert refused_row is not None
    assert (refused_row["session_uid"], refused_row["amount"], refused_row["error_code"],
            refused_row["error_message"]) == (None, None, "AmountExceedsRefundable",
                                              "only 1999 refundable")
    returned_row = store.row(returned, REFUND)
    assert returned_row is not None and returned_row["failure_reason"] == (
        "expired_or_canceled_card")

    # Money moved only for the succeeded refunds; the bank's return gives the 300 back.
    movements = {(m["uid"], m["phase"]): m["amount"] for m in store.ledger()}
    assert movements == {(succeeded, "Succeeded"): -500, (returned, "Succeeded"): -300,
                         (returned, "Failed"): 300}
    returned_at = {m["phase"]: m["at"].isoformat() for m in store.ledger(uid=returned)}
    assert returned_at == {"Succeeded": "2026-11-21T10:01:00", "Failed": "2026-11-21T10:02:00"}
    assert all(m["session_uid"] == SESSION_UID and m["kind"] == "refund"
               for m in store.ledger())


def test_ledger_nets_payments_and_refunds_per_currency(store: MirrorStore) -> None:
    store.upsert(session())
    store.upsert(session(str(uuid.uuid4()), amount=5000, currency="eur"))
    store.upsert(session(str(uuid.uuid4()), paid=False, amount=777))  # no money yet
    first, second, returned = new_uid(), new_uid(), new_uid()
    store.upsert(refund(first, ["Pending", "Succeeded"], amount=500), REFUND)
    store.upsert(refund(second, ["Pending", "Succeeded"], amount=250), REFUND)
    store.upsert(refund(returned, ["Pending", "Succeeded", "Failed"], amount=300), REFUND)
    store.upsert(refund(new_uid(), ["Pending"], amount=100), REFUND)  # not refunded yet
    store.upsert(refund(new_uid(), ["Pending", "Succeeded"], amount=1000, currency="eur"),
                 REFUND)
    assert ledger_sum(store, kind="payment", currency="usd") == 1999
    assert ledger_sum(store, kind="refund", currency="usd") == -750
    assert ledger_sum(store, currency="usd") == 1999 - 750  # net collected
    assert ledger_sum(store, currency="eur") == 5000 - 1000
    assert ledger_sum(store, session_uid=SESSION_UID, currency="usd") == 1999 - 750
    paid = store.ledger(uid=SESSION_UID)
    assert [(m["kind"], m["phase"], m["amount"], m["at"].isoformat()) for m in paid] == [
        ("payment", "Paid", 1999, "2026-11-20T10:02:00")]


def test_session_rows_carry_amount_refunded(store: MirrorStore) -> None:
    store.upsert(session())
    assert (store.row(SESSION_UID) or {})["amount_refunded"] is None
    store.upsert(session(refunded=500))  # a newer observation: only amountRefunded changed
    assert (store.row(SESSION_UID) or {})["amount_refunded"] == 500
    assert ledger_sum(store, uid=SESSION_UID) == 1999  # the payment is counted once


# -- idempotence and order -------------------------------------------------------------------


def test_replayed_and_reordered_observations_leave_the_newest(store: MirrorStore) -> None:
    rng = random.Random(14)
    refunds = {uid: steps(uid, path) for uid, path in (
        (new_uid(), ["Pending", "Succeeded", "Failed"]),
        (new_uid(), ["Pending", "RequiresAction", "Succeeded"]),
        (new_uid(), ["Pending", "Canceled"]))}
    observations = [o for seq in refunds.values() for o in seq] * 3  # each one thrice
    for _ in range(3):
        rng.shuffle(observations)
        for observation in observations:
            store.upsert(observation, REFUND)
        for seq in refunds.values():
            assert_refund_mirrored(store, seq[-1])
        # The ledger has each movement once, whatever the order and the repeats.
        assert len(store.ledger()) == 3 and ledger_sum(store) == -500


def test_older_observation_never_overwrites_newer(store: MirrorStore) -> None:
    uid = new_uid()
    pending, succeeded = steps(uid, ["Pending", "Succeeded"])
    assert store.upsert(succeeded, REFUND)
    assert not store.upsert(pending, REFUND)
    assert not store.upsert(succeeded, REFUND)  # the same one again: nothing to do
    assert (store.row(uid, REFUND) or {})["phase"] == "Succeeded"
    # Same phase and history, an older resourceVersion (a stale cache): ignored too.
    stale = refund(uid, ["Pending", "Succeeded"], rv=int(succeeded["metadata"]
                                                          ["resourceVersion"]) - 1)
    stale["status"]["refundId"] = "re_stale"
    assert not store.upsert(stale, REFUND)
    assert (store.row(uid, REFUND) or {})["refund_id"] == f"re_{uid[:8]}"


def test_a_movement_waits_for_amount_and_currency(store: MirrorStore) -> None:
    """An observation without the amount (not expected from the operator, but a status
    is data) moves no money; the next complete observation adds the movement once."""
    uid = new_uid()
    incomplete = refund(uid, ["Pending", "Succeeded"])
    incomplete["status"]["currency"] = None
    store.upsert(incomplete, REFUND)
    assert store.ledger(uid=uid) == []
    store.upsert(refund(uid, ["Pending", "Succeeded"]), REFUND)
    assert [m["amount"] for m in store.ledger(uid=uid)] == [-500]


# -- the writer ------------------------------------------------------------------------------


async def test_writer_batches_both_kinds_and_flags_deletions_per_kind(
        store: MirrorStore) -> None:
    writer = MirrorWriter(store, initial_backoff=0.05, max_backoff=0.5)
    writer.start()
    try:
        kept, deleted, away = new_uid(), new_uid(), new_uid()
        await writer.record(session())
        for uid in (kept, deleted, away):
            for observation in steps(uid, ["Pending", "Succeeded"]):
                await writer.record(observation, REFUND)
        assert await writer.flush(10)
        assert ledger_sum(store) == 1999 - 3 * 500
        await writer.record_deleted(refund(deleted, ["Pending", "Succeeded"]), REFUND)
        # A relist of refunds that no longer shows `away`: only refund rows are flagged.
        listed = frozenset({kept})
        await writer.record_listed(Sweep(None, listed, 10**9, kind=REFUND))
        assert await writer.flush(10)
    finally:
        await writer.aclose()
    rows = {r["uid"]: r for r in store.rows(kind=REFUND)}
    assert (rows[kept]["deleted"], rows[deleted]["deleted"], rows[away]["deleted"]) == (
        False, True, True)
    assert (rows[deleted]["deleted_while_away"], rows[away]["deleted_while_away"]) == (
        False, True)
    assert (store.row(SESSION_UID) or {})["deleted"] is False  # another kind, untouched
    # Deleting never loses money: the movements stay.
    assert ledger_sum(store) == 1999 - 3 * 500


# -- resync and the watch, from the real control plane -----------------------------------------


@pytest.fixture
def namespace(unmanaged_namespace: str) -> str:
    return unmanaged_namespace


def _create_refunds(kube: ControlPlane, namespace: str, statuses: dict[str, dict[str, Any]],
                    ) -> None:
    docs = [{"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentRefund",
             "metadata": {"name": name},
             "spec": {"sessionRef": {"name": "order-1001"}, "amount": 500,
                      "reason": "requested_by_customer"}} for name in statuses]
    kube.kubectl("apply", "-n", namespace, "-f", "-",
                 input="\n---\n".join(json.dumps(d) for d in docs))
    for name, status in statuses.items():
        kube.kubectl("patch", "paymentrefund", name, "-n", namespace, "--subresource=status",
                     "--type=merge", "-p", json.dumps({"status": status}))


def _status(*phases: str) -> dict[str, Any]:
    return {"phase": phases[-1], "provider": "stripe", "sessionUid": SESSION_UID,
            "paymentId": "pi_1", "refundId": "re_1", "amount": 500, "currency": "usd",
            "history": [{"phase": p, "at": f"2026-11-21T10:0{i}:00Z", "source": "operator",
                         "published": True} for i, p in enumerate(phases)]}


@pytest.mark.usefixtures("crd_installed")
async def test_resync_and_follow_mirror_refunds_from_the_cluster(
        kube: ControlPlane, namespace: str, kube_client: KubeClient, store: MirrorStore,
) -> None:
    _create_refunds(kube, namespace, {"ref-ok": _status("Pending", "Succeeded"),
                                      "ref-pending": _status("Pending")})
    report = await resync(kube_client, store, namespace)
    assert (report.refund_objects, report.refund_inserted, report.refund_transitions_added,
            report.objects) == (2, 2, 3, 0)
    items, _ = await kube_client.list_refunds_at(namespace)
    for item in items:
        assert_refund_mirrored(store, item)
    assert ledger_sum(store) == -500
    again = await resync(kube_client, store, namespace)
    assert (again.refund_unchanged, again.refund_inserted, again.refund_updated) == (2, 0, 0)

    # A stale row (the mirror missed a write) is repaired; a vanished object is flagged.
    ok = next(i for i in items if i["metadata"]["name"] == "ref-ok")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE payment_refunds SET phase = 'Pending', amount = 1 "
                          "WHERE uid = :uid"), {"uid": ok["metadata"]["uid"]})
    kube.kubectl("delete", "paymentrefund", "ref-pending", "-n", namespace, "--wait=true")
    repaired = await resync(kube_client, store, namespace)
    assert (repaired.refund_updated, repaired.refund_marked_deleted) == (1, 1)
    assert_refund_mirrored(store, ok)

    # The operator's own watch follows refunds: a new one, a change, a deletion.
    writer = MirrorWriter(store, initial_backoff=0.05, max_backoff=0.5)
    writer.start()
    task = asyncio.create_task(follow(kube_client, writer, namespace, (namespace,),
                                      kind=REFUND))
    try:
        _create_refunds(kube, namespace, {"ref-new": _status("Pending")})
        await _until(lambda: any(r["name"] == "ref-new" for r in store.rows(kind=REFUND)))
        kube.kubectl("patch", "paymentrefund", "ref-new", "-n", namespace,
                     "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": _status("Pending", "Succeeded", "Failed")}))
        await _until(lambda: ledger_sum(store) == -1000 + 500)
        kube.kubectl("delete", "paymentrefund", "ref-ok", "-n", namespace, "--wait=true")
        await _until(lambda: (store.row(ok["metadata"]["uid"], REFUND) or {}).get("deleted"))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.aclose()
    new = {r["name"]: r for r in store.rows(kind=REFUND)}["ref-new"]
    assert (new["phase"], new["deleted"]) == ("Failed", False)
    assert [t["phase"] for t in store.transitions(new["uid"], REFUND)] == [
        "Pending", "Succeeded", "Failed"]
    assert store.rows(kind=SESSION) == []  # the refund watch writes no session rows


async def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)
