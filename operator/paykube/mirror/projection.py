"""From a PaymentSession manifest to mirror rows, and the ordering key between observations.

Pure functions (no I/O), shared by the store, the writer's pending queue and resync.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from paykube.api.types import HistoryEntry, Phase, Status

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
        "version": version,
    }
    return Projection(uid=uid, version=version, row=row,
                      transitions=_transitions(uid, status.history))


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
