"""From a PaymentSession or PaymentRefund manifest to mirror rows, and the ordering key
between observations.

Pure functions (no I/O), shared by the store, the writer's pending queue and resync.
Each object kind (`SESSION`, `REFUND`) has its own row table and transitions table; both
feed the money ledger (`payment_ledger`): a Paid session adds `+amountTotal`, a refund
that Succeeded `-amount`, and a succeeded refund later Failed (returned by the bank)
`+amount` back. A ledger row is derived from the history (which only grows), so any
observation, replayed or late, derives the same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from paykube.api.refunds import RefundHistoryEntry, RefundStatus
from paykube.api.types import HistoryEntry, Phase, RefundPhase, Status

SESSION = "session"
REFUND = "refund"
KINDS = (SESSION, REFUND)
# payment_ledger.kind
LEDGER_PAYMENT = "payment"
LEDGER_REFUND = "refund"

# Layout of the ordering key, a non-negative signed BIGINT:
#   bits 58..61  phase rank (0..3 today, room up to 15)
#   bits 52..57  number of history entries (the CRD allows at most 32)
#   bits  0..51  metadata.resourceVersion (etcd's revision; 4.5e15 writes)
_RANK_SHIFT = 58
_HISTORY_SHIFT = 52
_MAX_HISTORY = (1 << (_RANK_SHIFT - _HISTORY_SHIFT)) - 1
_MAX_RESOURCE_VERSION = (1 << _HISTORY_SHIFT) - 1
_MAX_RANK = 15

class ManifestError(ValueError):
    """The manifest lacks what the mirror needs (uid, spec) or has a malformed field."""


def ordering_key(rank: int, history_len: int, resource_version: int) -> int:
    """Pack (phase rank, history length, resourceVersion) into one comparable BIGINT.

    The lexicographic order of the triple is the numeric order of the result: a session's
    phase rank and its history only ever grow, and within the same phase and history the
    API server's resourceVersion orders the writes. Wall clocks are never compared.
    """
    if not 0 <= rank <= _MAX_RANK:
        raise ManifestError(f"phase rank out of range: {rank}")
    if not 0 <= resource_version <= _MAX_RESOURCE_VERSION:
        raise ManifestError(f"resourceVersion out of range: {resource_version}")
    history = min(max(history_len, 0), _MAX_HISTORY)
    return (rank << _RANK_SHIFT) | (history << _HISTORY_SHIFT) | resource_version


def resource_version_of(version: int) -> int:
    """The resourceVersion packed into an ordering key."""
    return version & _MAX_RESOURCE_VERSION


def manifest_uid(manifest: dict[str, Any]) -> str:
    uid = (manifest.get("metadata") or {}).get("uid")
    if not uid:
        raise ManifestError("manifest has no metadata.uid")
    return str(uid)


def observation_version(meta: dict[str, Any], status: Status) -> int:
    """The ordering key of one observation of an object (its metadata and parsed status)."""
    try:
        resource_version = int(meta.get("resourceVersion") or 0)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"resourceVersion is not an integer: {exc}") from None
    return ordering_key(status.phase.rank, len(status.history), resource_version)


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 timestamp as a naive UTC datetime (what DATETIME(6) stores), or None."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Projection:
    """What the mirror stores about one observation of a PaymentSession."""

    uid: str
    version: int
    row: dict[str, Any]
    transitions: tuple[dict[str, Any], ...]
    kind: str = SESSION
    ledger: tuple[dict[str, Any], ...] = ()  # payment_ledger rows, without recorded_at


def project(manifest: dict[str, Any]) -> Projection:
    """The `payment_sessions` row (without `updated_at`/`deleted`) and ledger entries."""
    uid = manifest_uid(manifest)
    meta = manifest.get("metadata") or {}
    spec = manifest.get("spec") or {}
    try:
        status = Status.from_dict(manifest.get("status"))
        amount = int(spec["amount"])
        currency = str(spec["currency"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"manifest {uid} is malformed: {exc!r}") from None
    version = observation_version(meta, status)
    created_at = parse_time(meta.get("creationTimestamp")) or utcnow().replace(microsecond=0)
    description = spec.get("description")
    user_metadata = {str(k): str(v) for k, v in (spec.get("metadata") or {}).items()}
    row: dict[str, Any] = {
        "uid": uid,
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "phase": status.phase.value,
        "phase_rank": status.phase.rank,
        "amount": amount,
        "currency": currency,
        "description": str(description) if description is not None else None,
        "session_id": status.session_id,
        "payment_intent_id": status.payment_intent_id,
        "payment_status": status.payment_status,
        "amount_total": status.amount_total,
        "expires_at": parse_time(status.expires_at),
        "created_at": created_at,
        "created_day": created_at.date(),
        "metadata_json": user_metadata,
        "error_code": status.error.code if status.error else None,
        "error_provider_code": status.error.provider_code if status.error else None,
        "error_message": status.error.message if status.error else None,
        "error_doc_url": _clip(status.error.doc_url, 2048) if status.error else None,
        "error_explanation": status.error.explanation if status.error else None,
        "provider": _provider(manifest.get("status")),
        **_synced(status),
        **_outbox(status),
        "amount_refunded": status.amount_refunded,
        "version": version,
    }
    return Projection(uid=uid, version=version, row=row,
                      transitions=_transitions(uid, status.history),
                      ledger=_payment_ledger(row, status))


def project_as(manifest: dict[str, Any], kind: str) -> Projection:
    """`project` for a PaymentSession, `project_refund` for a PaymentRefund."""
    if kind == REFUND:
        return project_refund(manifest)
    if kind == SESSION:
        return project(manifest)
    raise ValueError(f"unknown object kind {kind!r}")


def _payment_ledger(row: dict[str, Any], status: Status) -> tuple[dict[str, Any], ...]:
    """`+amountTotal` (else the spec's amount) once the session is Paid."""
    if status.phase is not Phase.PAID:
        return ()
    paid_at = next((parse_time(h.at) for h in status.history if h.phase is Phase.PAID), None)
    amount = status.amount_total if status.amount_total is not None else row["amount"]
    return ({"uid": row["uid"], "kind": LEDGER_PAYMENT, "phase": Phase.PAID.value,
             "session_uid": row["uid"], "namespace": row["namespace"], "name": row["name"],
             "provider": row["provider"], "amount": int(amount),
             "currency": status.currency or row["currency"],
             "at": paid_at or utcnow()},)


# A total order of refund phases consistent with the lifecycle's (Pending < RequiresAction
# < Succeeded < Failed; Canceled ends like Failed), for the ordering key only.
_REFUND_RANK = {
    RefundPhase.PENDING: 0,
    RefundPhase.REQUIRES_ACTION: 1,
    RefundPhase.SUCCEEDED: 2,
    RefundPhase.FAILED: 3,
    RefundPhase.CANCELED: 3,
}


def refund_rank(phase: RefundPhase) -> int:
    return _REFUND_RANK[phase]


def project_refund(manifest: dict[str, Any]) -> Projection:
    """The `payment_refunds` row (without `updated_at`/`deleted`), its transitions and its
    ledger rows."""
    uid = manifest_uid(manifest)
    meta = manifest.get("metadata") or {}
    spec = manifest.get("spec") or {}
    try:
        status = RefundStatus.from_dict(manifest.get("status"))
        session_name = str(spec["sessionRef"]["name"])
        requested = spec.get("amount")
        requested_amount = int(requested) if requested is not None else None
        resource_version = int(meta.get("resourceVersion") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"refund manifest {uid} is malformed: {exc!r}") from None
    version = ordering_key(refund_rank(status.phase), len(status.history), resource_version)
    created_at = parse_time(meta.get("creationTimestamp")) or utcnow().replace(microsecond=0)
    error = status.error
    reason = spec.get("reason")
    waiting = [parse_time(h.at) for h in status.history if not h.published]
    times = [t for t in waiting if t is not None]
    row: dict[str, Any] = {
        "uid": uid,
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "session_name": session_name,
        "session_uid": status.session_uid,
        "provider": _clip(status.provider, 32),
        "refund_id": status.refund_id,
        "payment_id": status.payment_id,
        "requested_amount": requested_amount,
        "amount": status.amount,
        "currency": status.currency,
        "reason": _clip(str(reason), 32) if reason is not None else None,
        "phase": status.phase.value,
        "phase_rank": refund_rank(status.phase),
        "provider_status": _clip(status.provider_status, 64),
        "failure_reason": _clip(status.failure_reason, 64),
        "error_code": _clip(error.code, 128) if error else None,
        "error_provider_code": _clip(error.provider_code, 128) if error else None,
        "error_message": error.message if error else None,
        "outbox_pending": min(len(waiting), 32767),
        "outbox_since": min(times) if times else None,
        "created_at": created_at,
        "version": version,
    }
    return Projection(uid=uid, version=version, row=row, kind=REFUND,
                      transitions=_refund_transitions(uid, status.history),
                      ledger=_refund_ledger(row, status))


def _refund_transitions(uid: str, history: tuple[RefundHistoryEntry, ...]
                        ) -> tuple[dict[str, Any], ...]:
    seen: dict[RefundPhase, dict[str, Any]] = {}
    for entry in history:
        if entry.phase not in seen:
            seen[entry.phase] = {"uid": uid, "phase": entry.phase.value,
                                 "phase_rank": refund_rank(entry.phase),
                                 "at": parse_time(entry.at), "source": entry.source.value,
                                 "event_id": entry.event_id}
    return tuple(seen.values())


def _refund_ledger(row: dict[str, Any], status: RefundStatus) -> tuple[dict[str, Any], ...]:
    """`-amount` once Succeeded; `+amount` when Failed after Succeeded (a bank's return).
    A refund that failed or was canceled without succeeding moved no money. Nothing until
    the amount and currency are known (the next observation adds what is missing)."""
    if status.amount is None or not status.currency:
        return ()
    reached = {h.phase: parse_time(h.at) for h in reversed(status.history)}
    if RefundPhase.SUCCEEDED not in reached:
        return ()
    out = []
    for phase, sign in ((RefundPhase.SUCCEEDED, -1), (RefundPhase.FAILED, +1)):
        if phase in reached:
            out.append({"uid": row["uid"], "kind": LEDGER_REFUND, "phase": phase.value,
                        "session_uid": row["session_uid"], "namespace": row["namespace"],
                        "name": row["name"], "provider": row["provider"],
                        "amount": sign * status.amount, "currency": status.currency,
                        "at": reached[phase] or utcnow()})
    return tuple(out)


def _provider(raw_status: object) -> str:
    """`status.provider` (the account type that hosts the payment), else 'stripe': every
    session written before providers were objects is a Stripe session."""
    value = raw_status.get("provider") if isinstance(raw_status, dict) else None
    return str(value)[:32] if value else "stripe"


def _synced(status: Status) -> dict[str, Any]:
    for condition in status.conditions:
        if condition.type == "Synced":
            return {"synced": condition.status == "True",
                    "synced_reason": _clip(condition.reason, 128)}
    return {"synced": None, "synced_reason": None}


def _outbox(status: Status) -> dict[str, Any]:
    """History entries the broker has not confirmed, and when the oldest was reached."""
    waiting = [parse_time(entry.at) for entry in status.history if not entry.published]
    times = [t for t in waiting if t is not None]
    return {"outbox_pending": min(len(waiting), 32767),
            "outbox_since": min(times) if times else None}


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


def _transitions(uid: str, history: tuple[HistoryEntry, ...]) -> tuple[dict[str, Any], ...]:
    """One ledger row per phase reached; the first entry wins if a phase repeats."""
    seen: dict[Phase, dict[str, Any]] = {}
    for entry in history:
        if entry.phase in seen:
            continue
        seen[entry.phase] = {
            "uid": uid,
            "phase": entry.phase.value,
            "phase_rank": entry.phase.rank,
            "at": parse_time(entry.at),
            "source": entry.source.value,
            "event_id": entry.event_id,
        }
    return tuple(seen.values())


def same_row(stored: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a stored row already holds every column `project()` computed (the key aside)."""
    return all(_normalise(stored.get(c)) == _normalise(v) for c, v in desired.items()
               if c != "uid")


def _normalise(value: object) -> object:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, bool):
        return int(value)
    return value
