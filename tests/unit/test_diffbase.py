"""The PaymentSession diff base read from the status (operator/diffbase.py), with kopf's
own cause detection: which cause each object gets, and when kopf's record is still written.
"""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import kopf
import pytest
from kopf._cogs.structs import diffs
from kopf._core.intents import causes

from paykube.operator.diffbase import (
    CREATE_HANDLER,
    PREFIX,
    ProgressStorage,
    SessionDiffBaseStorage,
    created,
)

RECORD = f"{PREFIX}/last-handled-configuration"


def as_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(Any, raw))


def session(status: dict[str, Any] | None = None, *, cancel: bool | None = None,
            annotations: dict[str, str] | None = None, kind: str = "PaymentSession",
            ) -> dict[str, Any]:
    spec: dict[str, Any] = {"amount": 1999, "currency": "usd", "successUrl": "https://x/s"}
    if cancel is not None:
        spec["cancel"] = cancel
    body: dict[str, Any] = {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": kind,
        "metadata": {"namespace": "shop", "name": "order", "uid": "uid-1",
                     "labels": {"team": "a"}, "annotations": dict(annotations or {})},
        "spec": spec}
    if status is not None:
        body["status"] = status
    return body


OPEN = {"phase": "Open", "sessionId": "cs_test_1"}
PENDING = {"phase": "Pending", "expiresAt": "2026-11-30T12:00:00Z"}


def cause_of(storage: SessionDiffBaseStorage, raw: dict[str, Any],
             *, initial: bool = False) -> causes.Reason:
    body = as_body(raw)
    old = storage.fetch(body=body)
    new = storage.build(body=body)
    diff = diffs.diff(old, new)
    return causes.detect_changing_cause(
        finalizer="payments.paykube.dev/finalizer",
        raw_event={"type": "MODIFIED", "object": cast(Any, raw)},
        body=body, old=old, new=new, diff=diff, initial=initial,
        resource=None, logger=None, patch=kopf.Patch(), memo=None, indices=None).reason


@pytest.mark.parametrize(("status", "expected"), [
    (None, False), ({}, False), (PENDING, False), ({**PENDING, "error": {"code": "X"}}, False),
    ({"phase": "Pending", "sessionId": "cs_1"}, True), (OPEN, True), ({"phase": "Failed"}, True),
    ({"phase": "Paid", "sessionId": "cs_1"}, True)])
def test_created_means_a_provider_session_or_an_ending(status: dict[str, Any] | None,
                                                       expected: bool) -> None:
    assert created(status) is expected


def test_a_new_or_pending_object_is_kopfs_create() -> None:
    storage = SessionDiffBaseStorage()
    assert cause_of(storage, session()) is causes.Reason.CREATE
    assert cause_of(storage, session(PENDING)) is causes.Reason.CREATE


def test_an_open_object_is_nothing_to_do_and_resumed_when_first_listed() -> None:
    storage = SessionDiffBaseStorage()
    assert cause_of(storage, session(OPEN)) is causes.Reason.NOOP
    assert cause_of(storage, session(OPEN), initial=True) is causes.Reason.RESUME
    # Labels, kubectl's record and paykube's own annotations are no change either.
    noisy = session(OPEN, annotations={
        f"{PREFIX}/touch-dummy": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    assert cause_of(storage, noisy) is causes.Reason.NOOP


def test_a_create_handler_still_retrying_stays_a_create() -> None:
    storage = SessionDiffBaseStorage()
    retrying = session(OPEN, annotations={f"{PREFIX}/{CREATE_HANDLER}": '{"retries":1}'})
    assert cause_of(storage, retrying) is causes.Reason.CREATE


def test_cancel_to_carry_out_is_an_update_of_spec_cancel() -> None:
    storage = SessionDiffBaseStorage()
    body = as_body(session(OPEN, cancel=True))
    old, new = storage.fetch(body=body), storage.build(body=body)
    assert cause_of(storage, session(OPEN, cancel=True)) is causes.Reason.UPDATE
    assert [(op, path) for op, path, *_ in diffs.diff(old, new)] == [("add", ("spec", "cancel"))]
    # cancel: false is nothing to do.
    assert cause_of(storage, session(OPEN, cancel=False)) is causes.Reason.NOOP


def test_a_stored_record_wins() -> None:
    """Objects handled by an earlier paykube (or whose cancel was handled) keep kopf's
    record: it is compared as before."""
    storage = SessionDiffBaseStorage()
    handled = SessionDiffBaseStorage().build(body=as_body(session(OPEN, cancel=True)))
    record = {RECORD: json.dumps(handled)}
    assert cause_of(storage, session(OPEN, cancel=True, annotations=record)) \
        is causes.Reason.NOOP
    old = copy.deepcopy(handled)
    old["spec"]["amount"] = 1
    assert cause_of(storage, session(OPEN, annotations={RECORD: json.dumps(old)})) \
        is causes.Reason.UPDATE


def test_other_kinds_keep_kopfs_record() -> None:
    storage = SessionDiffBaseStorage()
    refund = session({"phase": "Succeeded"}, kind="PaymentRefund")
    assert cause_of(storage, refund) is causes.Reason.CREATE
    patch = kopf.Patch()
    storage.handled("uid-1")
    storage.store(body=as_body(refund), patch=patch,
                  essence=storage.build(body=as_body(refund)))
    assert RECORD in patch["metadata"]["annotations"]


def stored(storage: SessionDiffBaseStorage, raw: dict[str, Any]) -> dict[str, Any]:
    patch = kopf.Patch()
    storage.store(body=as_body(raw), patch=patch, essence=storage.build(body=as_body(raw)))
    return dict(patch)


def test_only_a_handled_create_skips_the_record() -> None:
    storage = SessionDiffBaseStorage()
    # Not handled (a create that failed for good): kopf's record, so it is not run again.
    assert RECORD in stored(storage, session())["metadata"]["annotations"]
    storage.handled("uid-1")
    assert stored(storage, session()) == {}  # the status says it from now on


def test_a_record_already_there_is_kept_up_to_date() -> None:
    """A handled object with kopf's record (an earlier paykube's, a handled cancel's) has
    it written again, as kopf would."""
    storage = SessionDiffBaseStorage()
    storage.handled("uid-1")
    record = storage.build(body=as_body(session(OPEN, cancel=True)))
    patch = stored(storage, session(OPEN, cancel=False, annotations={RECORD: json.dumps(record)}))
    assert json.loads(patch["metadata"]["annotations"][RECORD])["spec"]["cancel"] is False


def test_the_handlers_own_pending_write_arriving_late_is_no_create() -> None:
    storage = SessionDiffBaseStorage()
    assert cause_of(storage, session(PENDING)) is causes.Reason.CREATE
    storage.handled("uid-1")
    assert cause_of(storage, session(PENDING)) is causes.Reason.NOOP
    assert cause_of(storage, session(PENDING, cancel=True)) is causes.Reason.UPDATE


def test_a_handled_cancel_is_recorded() -> None:
    storage = SessionDiffBaseStorage()
    storage.handled("uid-1")
    patch = stored(storage, session(OPEN, cancel=True))
    assert json.loads(patch["metadata"]["annotations"][RECORD])["spec"]["cancel"] is True


@pytest.mark.parametrize("record", ["not json", "[1]", "null"])
def test_a_record_kopf_did_not_write_is_none(record: str) -> None:
    """An author's annotation that kopf could not read would fail every event of the
    object: the status says what was handled instead, and the next store replaces it."""
    storage = SessionDiffBaseStorage()
    assert cause_of(storage, session(OPEN, annotations={RECORD: record})) \
        is causes.Reason.NOOP
    storage.handled("uid-1")
    patch = stored(storage, session(OPEN, cancel=True, annotations={RECORD: record}))
    assert json.loads(patch["metadata"]["annotations"][RECORD])["spec"]["cancel"] is True


@pytest.mark.parametrize("record", [
    "not json", "[]", '"x"', '{"started": "yesterday"}', '{"retries": "1"}',
    '{"subrefs": [1]}', '{"success": "no"}'])
def test_a_progress_record_kopf_did_not_write_is_none(record: str) -> None:
    storage = ProgressStorage()
    key = kopf.HandlerId(CREATE_HANDLER)
    body = as_body(session(OPEN, annotations={f"{PREFIX}/{CREATE_HANDLER}": record}))
    assert storage.fetch(key=key, body=body) is None
    kopfs = {"started": "2026-11-29T12:00:00.123456+00:00", "purpose": "create",
             "retries": 1, "success": False, "failure": False, "message": None,
             "subrefs": ["a"], "delayed": "2026-11-29T12:00:10+00:00"}
    body = as_body(session(OPEN, annotations={f"{PREFIX}/{CREATE_HANDLER}": json.dumps(kopfs)}))
    assert storage.fetch(key=key, body=body) == kopfs


def test_progress_records_carry_no_marker() -> None:
    storage = ProgressStorage()
    patch = kopf.Patch()
    body = as_body(session())
    storage.store(key=kopf.HandlerId(CREATE_HANDLER), record={"retries": 1}, body=body,
                  patch=patch)
    assert list(patch["metadata"]["annotations"]) == [f"{PREFIX}/{CREATE_HANDLER}"]
    storage.purge(key=kopf.HandlerId(CREATE_HANDLER), body=body, patch=patch)
    assert not patch.get("metadata", {}).get("annotations")


def test_the_essence_is_kopfs_own_without_copying_the_status() -> None:
    """The same essence kopf builds (paykube's annotations left out, as kopf does once its
    marker is there), from the spec, labels and annotations only."""
    raw = session({**OPEN, "history": [{"phase": "Open"}] * 50}, cancel=True, annotations={
        f"{PREFIX}/kopf-managed": "yes", f"{PREFIX}/{CREATE_HANDLER}": "{}",
        "kubectl.kubernetes.io/last-applied-configuration": "{}", "team.example/owner": "a"})
    raw["metadata"]["managedFields"] = [{"manager": "kubectl"}] * 20
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    ours = SessionDiffBaseStorage()
    expected = kopfs.build(body=as_body(raw), extra_fields=[("spec", "cancel")])
    assert ours.build(body=as_body(raw), extra_fields=[("spec", "cancel")]) == expected
    assert expected["metadata"] == {"labels": {"team": "a"},
                                    "annotations": {"team.example/owner": "a"}}
    # A handler on a status field: kopf's own way, the status field kept.
    with_status = ours.build(body=as_body(raw), extra_fields=[("status", "phase")])
    assert with_status["status"] == {"phase": "Open"}
