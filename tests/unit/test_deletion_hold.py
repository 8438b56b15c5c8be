"""When a deletion blocked by a permanent provider error may go ahead: only once the
provider's session can no longer be paid."""

from __future__ import annotations

import datetime as dt

import pytest

from paykube.api.types import Status
from paykube.operator.reconciler import EXPIRY_MARGIN, payable_for

EXPIRES = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def status(phase: str, expires_at: str | None = "2026-11-26T12:00:00Z") -> Status:
    return Status.from_dict({"phase": phase, "sessionId": "cs_test_1", "expiresAt": expires_at})


@pytest.mark.parametrize(("now", "left"), [
    (EXPIRES - dt.timedelta(hours=1), 3600 + EXPIRY_MARGIN.total_seconds()),
    (EXPIRES, EXPIRY_MARGIN.total_seconds()),
    (EXPIRES + EXPIRY_MARGIN, 0.0),
    (EXPIRES + dt.timedelta(hours=1), -3600 + EXPIRY_MARGIN.total_seconds()),
])
def test_open_session_is_payable_until_expiry_plus_margin(now: dt.datetime,
                                                          left: float) -> None:
    assert payable_for(status("Open"), now) == left


def test_processing_payment_has_no_bound() -> None:
    # Past its checkout expiry, a settling payment can still succeed.
    assert payable_for(status("Processing"), EXPIRES + dt.timedelta(days=3)) is None


def test_no_expiry_known_has_no_bound() -> None:
    assert payable_for(status("Open", expires_at=None), EXPIRES) is None
