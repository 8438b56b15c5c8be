"""Known, lifelike data for the dashboard: PaymentSession manifests spread over a time span,
written to the mirror through its own projection, for the demo, the tests and the bench.

- `generate(count, now=..., span=...)`: deterministic sessions (a seeded RNG) with the
  mix a shop sees: mostly paid, some expired, canceled or failed (with the provider's code,
  doc URL and an explanation), a few still in flight, a few that need attention (open past
  expiry, stuck in Processing, Synced=False, events waiting in the outbox, deleted while
  the mirror was away);
- `session(...)`: one manifest, for tests that need a precise row (hostile text included);
- `seed(engine, sessions)`: through `MirrorStore.apply`, exactly as the operator writes;
- `bulk_load(url, count)`: `LOAD DATA LOCAL INFILE` of the same projected rows, for the
  million-row benchmark (an empty mirror only).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import random
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube.mirror.projection import project, utcnow
from paykube.mirror.schema import payment_session_transitions, payment_sessions
from paykube.mirror.store import MirrorOp, MirrorStore

NAMESPACES = (("shop", 40), ("billing", 25), ("marketplace", 20), ("donations", 10),
              ("events", 5))
STRIPE_CURRENCIES = (("usd", 50), ("eur", 30), ("gbp", 12), ("jpy", 8))
# (paykube code, provider code, message, doc URL, explanation), as the operator records them.
ERRORS: tuple[tuple[str, str | None, str, str | None, str], ...] = (
    ("ProviderRejected", "amount_too_small",
     "Amount must convert to at least 50 cents.",
     "https://stripe.com/docs/error-codes/amount-too-small",
     "spec.amount is below the provider's minimum charge for this currency: raise it "
     "(delete and recreate the PaymentSession, the spec is immutable)."),
    ("PaymentFailed", "card_declined", "Your card was declined.",
     "https://stripe.com/docs/error-codes/card-declined",
     "The customer's bank declined the payment; nothing to change on your side. Ask the "
     "customer to use another card."),
    ("ProviderRejected", "url_invalid", "Not a valid URL",
     "https://stripe.com/docs/error-codes/url-invalid",
     "spec.successUrl or spec.cancelUrl is not a valid https URL: fix it in the manifest."),
    ("CredentialsInvalid", None, "Invalid API Key provided", None,
     "The Stripe key in the Secret named by the provider account is wrong or revoked: "
     "put a valid secret key (sk_...) in it; paykube picks it up within its cache TTL."),
)


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _z(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class SeedSession:
    manifest: dict[str, Any]
    away: bool = False  # flag the row deleted while the mirror was away


def session(*, uid: str | None = None, name: str, namespace: str = "shop",
            created: dt.datetime, amount: int = 1999, currency: str = "usd",
            provider: str = "stripe", steps: Sequence[tuple[str, dt.datetime, str]] = (),
            description: str | None = "Annual subscription",
            metadata: dict[str, str] | None = None, error: dict[str, Any] | None = None,
            synced: tuple[bool, str] | None = None, unpublished: int = 0,
            expires_at: dt.datetime | None = None, resource_version: int = 1,
            amount_total: int | None = None) -> dict[str, Any]:
    """A PaymentSession manifest. `steps`: (phase, time, source) in order; the last one is
    the phase; `unpublished`: how many of the last steps the broker has not confirmed."""
    uid = uid or str(uuid.uuid4())
    history = []
    for i, (phase, at, source) in enumerate(steps):
        entry: dict[str, Any] = {"phase": phase, "at": _z(at), "source": source,
                                 "published": i < len(steps) - unpublished}
        if source == "webhook":
            entry["eventId"] = f"evt_{uid[:8]}_{phase.lower()}"
        history.append(entry)
    phase = steps[-1][0] if steps else "Pending"
    status: dict[str, Any] = {"phase": phase, "provider": provider, "history": history}
    if phase != "Pending" or error is None:
        status["sessionId"] = f"cs_test_{uid.replace('-', '')[:24]}"
    if expires_at is not None:
        status["expiresAt"] = _z(expires_at)
    if phase in ("Processing", "Paid", "Failed") and "sessionId" in status:
        status["paymentIntentId"] = f"pi_{uid.replace('-', '')[:24]}"
    if phase == "Paid":
        status["paymentStatus"] = "paid"
        status["amountTotal"] = amount if amount_total is None else amount_total
        status["currency"] = currency
    if error is not None:
        status["error"] = error
    if synced is not None:
        changed = _z(steps[-1][1] if steps else created)
        status["conditions"] = [{"type": "Synced", "status": "True" if synced[0] else "False",
                                 "reason": synced[1], "message": "",
                                 "lastTransitionTime": changed}]
    spec: dict[str, Any] = {"amount": amount, "currency": currency,
                            "successUrl": "https://shop.example/ok",
                            "cancelUrl": "https://shop.example/cancel",
                            "metadata": metadata if metadata is not None else {}}
    if description is not None:
        spec["description"] = description
    return {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
            "metadata": {"uid": uid, "name": name, "namespace": namespace,
                         "resourceVersion": str(resource_version),
                         "creationTimestamp": _z(created)},
            "spec": spec, "status": status}


def error_status(index: int) -> dict[str, Any]:
    code, provider_code, message, doc_url, explanation = ERRORS[index % len(ERRORS)]
    out: dict[str, Any] = {"code": code, "message": message, "explanation": explanation,
                           "retryable": False}
    if provider_code is not None:
        out["providerCode"] = provider_code
    if doc_url is not None:
        out["docUrl"] = doc_url
    return out


def generate(count: int, *, now: dt.datetime | None = None,
             span: dt.timedelta = dt.timedelta(days=3), seed: int = 16,
             start: int = 0, stop: int | None = None) -> Iterator[SeedSession]:
    """Sessions `start`..`stop` of `count` created over the `span` before `now` (naive
    UTC), oldest first. Each has its own seeded RNG: any range can be made on its own."""
    now = now or utcnow()
    for i in range(start, count if stop is None else min(stop, count)):
        rng = random.Random(seed * 1_000_003 + i)
        created = now - span + span * (i + rng.random()) / count
        yield _one(rng, i, created, now)


def _one(rng: random.Random, i: int, created: dt.datetime, now: dt.datetime) -> SeedSession:
    provider = "razorpay" if rng.random() < 0.15 else "stripe"
    currency = "inr" if provider == "razorpay" else _weighted(rng, STRIPE_CURRENCIES)
    amount = rng.randrange(500, 50_000) if currency != "jpy" else rng.randrange(300, 30_000)
    namespace = _weighted(rng, NAMESPACES)
    name = f"order-{i:07d}"
    expires = created + dt.timedelta(hours=24)
    opened = created + dt.timedelta(seconds=rng.uniform(0.3, 3))
    steps: list[tuple[str, dt.datetime, str]] = [("Pending", created, "operator"),
                                                 ("Open", opened, "operator")]
    kw: dict[str, Any] = {"expires_at": expires}
    away = False
    roll = rng.random()
    done = opened + dt.timedelta(seconds=rng.uniform(20, 1800))
    if roll < 0.64:  # paid, some through Processing (async payment methods)
        if done < now and rng.random() < 0.1:
            steps.append(("Processing", done, "webhook"))
            done += dt.timedelta(minutes=rng.uniform(1, 60))
        if done < now:
            steps.append(("Paid", done, rng.choice(("webhook", "webhook", "poll"))))
    elif roll < 0.80:  # the customer never paid: expired once expiresAt passed
        if expires < now:
            steps.append(("Expired", expires + dt.timedelta(seconds=rng.uniform(1, 90)),
                          rng.choice(("webhook", "poll"))))
    elif roll < 0.85:
        if done < now:
            steps.append(("Canceled", done, "operator"))
    elif roll < 0.93:  # failed: rejected at creation, or declined while processing
        kind = rng.randrange(len(ERRORS))
        kw["error"] = error_status(kind)
        kw["synced"] = (True, "Failed")
        if ERRORS[kind][1] == "card_declined" and done < now:
            steps += [("Processing", done, "webhook"),
                      ("Failed", done + dt.timedelta(seconds=30), "webhook")]
        else:
            steps = [("Pending", created, "operator"), ("Failed", opened, "operator")]
            kw.pop("expires_at")
    elif roll < 0.95:  # open past its expiry when it is old enough: a lost webhook
        pass
    elif roll < 0.96:  # stuck in Processing
        if done < now:
            steps.append(("Processing", done, "webhook"))
    elif roll < 0.97:  # the provider is unreachable: Synced=False with a retryable error
        steps = [("Pending", created, "operator")]
        kw.pop("expires_at")
        kw["error"] = {"code": "ProviderUnavailable", "message": "503 from the provider",
                       "retryable": True}
        kw["synced"] = (False, "ProviderUnavailable")
    elif roll < 0.98:
        away = True
    if created > now - dt.timedelta(hours=6) and rng.random() < 0.05:
        kw["unpublished"] = 1  # the broker has not confirmed the newest event yet
    return SeedSession(session(uid=str(uuid.UUID(int=rng.getrandbits(128))), name=name,
                               namespace=namespace, created=created, amount=amount,
                               currency=currency, provider=provider, steps=steps,
                               description=f"Order {i}", metadata={"order": str(i)},
                               resource_version=1000 + i, **kw), away=away)


def seed(engine: sqlalchemy.Engine, sessions: Iterable[SeedSession], *,
         batch: int = 200) -> int:
    """Write through the mirror's own upsert (`MirrorStore.apply`); returns the count."""
    store = MirrorStore(engine)
    written = 0
    chunk: list[SeedSession] = []

    def flush() -> None:
        store.apply([MirrorOp(s.manifest["metadata"]["uid"], project(s.manifest))
                     for s in chunk])
        away = [MirrorOp(s.manifest["metadata"]["uid"], deleted=True, away=True)
                for s in chunk if s.away]
        if away:
            store.apply(away)

    for item in sessions:
        chunk.append(item)
        if len(chunk) >= batch:
            flush()
            written += len(chunk)
            chunk = []
    if chunk:
        flush()
        written += len(chunk)
    return written


def bulk_load(url: str, count: int, *, now: dt.datetime | None = None,
              span: dt.timedelta = dt.timedelta(days=3), seed: int = 16,
              processes: int = 1, chunk: int = 20_000) -> int:
    """Load `generate(count, ...)` into an empty mirror with `LOAD DATA LOCAL INFILE` of
    the projected rows and ledger entries (no upsert guard): the benchmark's million rows
    in minutes. `processes` > 1 projects chunks in parallel."""
    now = now or utcnow()
    ranges = [(count, now, span, seed, i, min(i + chunk, count))
              for i in range(0, count, chunk)]
    engine = sqlalchemy.create_engine(url, poolclass=NullPool,
                                      connect_args={"local_infile": True})
    written = 0
    try:
        with contextlib.ExitStack() as stack:
            if processes > 1:
                pool = stack.enter_context(multiprocessing.get_context("spawn")
                                           .Pool(processes))
                parts: Iterable[tuple[str, str, int]] = pool.imap(_tsv_chunk, ranges)
            else:
                parts = map(_tsv_chunk, ranges)
            for rows, steps, n in parts:
                _load(engine, payment_sessions, rows)
                _load(engine, payment_session_transitions, steps)
                written += n
    finally:
        engine.dispose()
    return written


_SESSION_COLUMNS = [c.name for c in payment_sessions.columns]
_STEP_COLUMNS = [c.name for c in payment_session_transitions.columns]


def _tsv_chunk(args: tuple[int, dt.datetime, dt.timedelta, int, int, int]
               ) -> tuple[str, str, int]:
    count, now, span, seed, start, stop = args
    loaded = utcnow()
    rows: list[str] = []
    steps: list[str] = []
    for item in generate(count, now=now, span=span, seed=seed, start=start, stop=stop):
        proj = project(item.manifest)
        row = {**proj.row, "updated_at": loaded, "deleted": item.away,
               "deleted_at": loaded if item.away else None, "deleted_while_away": item.away}
        rows.append("\t".join(_field(row.get(c)) for c in _SESSION_COLUMNS))
        steps.extend("\t".join(_field({**t, "recorded_at": loaded}.get(c))
                               for c in _STEP_COLUMNS) for t in proj.transitions)
    return "\n".join(rows) + "\n", "\n".join(steps) + "\n", len(rows)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: object) -> str:
    """One LOAD DATA field (tab-separated, backslash escapes, \\N for NULL)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dict):
        return json.dumps(value).translate(_ESCAPES)
    return str(value).translate(_ESCAPES)


def _load(engine: sqlalchemy.Engine, table: sqlalchemy.Table, data: str) -> None:
    if not data.strip():
        return
    columns = [c.name for c in table.columns]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv") as out:
        out.write(data)
        out.flush()
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"LOAD DATA LOCAL INFILE '{out.name}' INTO TABLE {table.name} "
                "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
                f"LINES TERMINATED BY '\\n' ({', '.join(columns)})")
