"""The mirror's projection of PaymentRefunds (pure): the ordering key follows the refund
lifecycle, money moves only on Succeeded (and back on a later Failed), unusable manifests
are refused clearly and dropped by the writer without stopping it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy

from paykube.api.types import RefundPhase
from paykube.mirror.projection import (
    REFUND,
    ManifestError,
    project_as,
    project_refund,
    refund_rank,
)
from paykube.mirror.store import MirrorStore, MirrorWriter


def manifest(*phases: str, rv: int = 10, amount: int | None = 500,
             currency: str | None = "eur") -> dict[str, Any]:
    return {"metadata": {"uid": "r-1", "name": "refund-1", "namespace": "shop",
                         "resourceVersion": str(rv),
                         "creationTimestamp": "2026-11-21T10:00:00Z"},
            "spec": {"sessionRef": {"name": "order-1"}},
            "status": {"phase": phases[-1], "amount": amount, "currency": currency,
                       "sessionUid": "s-1",
                       "history": [{"phase": p, "at": f"2026-11-21T10:0{i}:00Z",
                                    "source": "operator"} for i, p in enumerate(phases)]}}


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(RefundPhase, 2)))
def test_rank_never_goes_back_along_the_lifecycle(a: RefundPhase, b: RefundPhase) -> None:
    if a.precedes(b):
        assert refund_rank(a) < refund_rank(b)


def test_a_later_observation_has_a_higher_key() -> None:
    keys = [project_refund(manifest(*path, rv=rv)).version for rv, path in (
        (50, ("Pending",)), (40, ("Pending", "RequiresAction")),
        (30, ("Pending", "RequiresAction", "Succeeded")),
        (20, ("Pending", "RequiresAction", "Succeeded", "Failed")))]
    assert keys == sorted(keys) and len(set(keys)) == 4
    # Within one phase and history, the API server's resourceVersion orders the writes.
    assert project_refund(manifest("Pending", rv=11)).version > project_refund(
        manifest("Pending", rv=10)).version


def test_money_moves_on_succeeded_and_back_on_a_return_only() -> None:
    def moved(*phases: str, **kwargs: Any) -> list[tuple[str, int]]:
        return [(m["phase"], m["amount"]) for m in project_refund(
            manifest(*phases, **kwargs)).ledger]

    assert moved("Pending") == [] and moved("Pending", "RequiresAction") == []
    assert moved("Failed") == [] and moved("Pending", "Canceled") == []
    assert moved("Pending", "Succeeded") == [("Succeeded", -500)]
    assert moved("Pending", "Succeeded", "Failed") == [("Succeeded", -500), ("Failed", 500)]
    assert moved("Pending", "Succeeded", currency=None) == []  # waits for the currency
    entry = project_refund(manifest("Pending", "Succeeded")).ledger[0]
    assert (entry["kind"], entry["uid"], entry["session_uid"], entry["currency"]) == (
        "refund", "r-1", "s-1", "eur")


@pytest.mark.parametrize("broken", [
    {"spec": {}},  # no sessionRef
    {"spec": {"sessionRef": {"name": "order-1"}, "amount": "lots"}},
    {"status": {"phase": "Refunded"}},  # not a refund phase
    {"metadata": {"uid": "r-1", "resourceVersion": "not-a-number"}},
])
def test_unusable_manifests_are_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(ManifestError):
        project_as({**manifest("Pending"), **broken}, REFUND)
    with pytest.raises(ManifestError, match="uid"):
        project_refund({"metadata": {}, "spec": {}})


async def test_the_writer_drops_an_unusable_refund_and_keeps_the_others() -> None:
    writer = MirrorWriter(MirrorStore(sqlalchemy.create_engine("sqlite://")))  # not started
    await writer.record({**manifest("Pending"), "spec": {}}, REFUND)
    await writer.record(manifest("Pending"), REFUND)
    assert (writer.dropped, writer.pending_count()) == (1, 1)
    with pytest.raises(ValueError, match="kind"):
        project_as(manifest("Pending"), "invoice")
