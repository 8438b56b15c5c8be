"""Rebuild or repair the mirror from the cluster, and say what changed.

    paykube-resync [--namespace NS]        (or: python -m paykube.mirror.resync)

The database comes from the operator's own settings: `PAYKUBE_DATABASE_URL_FILE` or
`PAYKUBE_DATABASE_URL`, or with
`PAYKUBE_SECRETS_SOURCE=aws` the RDS secret `PAYKUBE_AWS_DATABASE_SECRET_ID` (with
`PAYKUBE_AWS_REGION`, `PAYKUBE_AWS_ENDPOINT_URL`, `PAYKUBE_DATABASE_HOST`/`_PORT`/`_NAME`
as defaults); `--database-url` overrides both.

Lists every PaymentSession and every PaymentRefund (all namespaces) and, per object:
inserts a missing row, rewrites a row that differs from the object (a stale or corrupted
row, including one whose ordering key claims to be newer than the object really is),
re-adds missing transitions and money movements (`payment_ledger`); rows of objects that
no longer exist are flagged `deleted`. The `refund_*` counts of the report are the
PaymentRefunds'; a cluster without the PaymentRefund CRD has none. Safe while the operator runs:
rows are read *before* the list, so a row the operator writes meanwhile is never taken
for a deleted object, and writes stay guarded by the ordering key (a row whose key is
corrupted is replaced only while it still holds the key resync read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import Engine

from paykube.api.refunds import refund_api_path
from paykube.errors import ApiServerUnavailable, PaykubeError
from paykube.kube.client import KubeClient, NotFound
from paykube.kube.config import KubeConfig
from paykube.mirror.migrate import migrate
from paykube.mirror.projection import (
    REFUND,
    SESSION,
    ManifestError,
    manifest_uid,
    project_as,
    same_row,
)
from paykube.mirror.store import MirrorStore
from paykube.mirror.wiring import build_engine
from paykube.secrets.stripe_secrets import build_aws_source
from paykube.settings import SecretStr, Settings

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "PAYKUBE_DATABASE_URL"


@dataclass
class ResyncReport:
    """What resync found and changed (counts of rows)."""

    objects: int = 0  # PaymentSessions listed in the cluster
    inserted: int = 0
    updated: int = 0
    transitions_added: int = 0
    marked_deleted: int = 0
    unchanged: int = 0
    skipped: int = 0  # unusable manifests (no uid or spec)
    refund_objects: int = 0  # PaymentRefunds listed in the cluster
    refund_inserted: int = 0
    refund_updated: int = 0
    refund_transitions_added: int = 0
    refund_marked_deleted: int = 0
    refund_unchanged: int = 0
    refund_skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Counts:
    objects: int = 0
    inserted: int = 0
    updated: int = 0
    transitions_added: int = 0
    marked_deleted: int = 0
    unchanged: int = 0
    skipped: int = 0


async def resync(kube_client: KubeClient, store: MirrorStore,
                 namespace: str | None = None) -> ResyncReport:
    """Make the mirror match the cluster (one namespace, or all); see the module doc."""
    sessions = await _resync_kind(kube_client, store, namespace, SESSION)
    try:
        refunds = await _resync_kind(kube_client, store, namespace, REFUND)
    except NotFound:  # the PaymentRefund CRD is not installed (yet)
        log.warning("resync: PaymentRefunds cannot be listed (is the CRD installed?)")
        refunds = _Counts()
    counts = {f.name: getattr(sessions, f.name) for f in fields(_Counts)}
    counts.update({f"refund_{f.name}": getattr(refunds, f.name) for f in fields(_Counts)})
    return ResyncReport(**counts)


# A list answered 429 or 5xx is tried again a few times (about 7 s in all): the API server
# answers 429 while a resource's watch cache is still initializing (a CRD just installed, a
# server just restarted), which a one-shot command should ride out rather than fail on.
_LIST_RETRIES = (0.5, 1.0, 2.0, 4.0)


async def _list(kube_client: KubeClient, namespace: str | None, kind: str
                ) -> list[dict[str, Any]]:
    for delay in (*_LIST_RETRIES, None):
        try:
            if kind == REFUND:
                return (await kube_client.list_refunds_at(namespace))[0]
            return await kube_client.list_sessions(namespace)
        except ApiServerUnavailable:
            if delay is None:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _getter(kube_client: KubeClient, kind: str
            ) -> Callable[[str, str], Awaitable[dict[str, Any]]]:
    if kind == REFUND:
        return lambda namespace, name: kube_client.get_object(refund_api_path(namespace, name))
    return kube_client.get_session


async def _resync_kind(kube_client: KubeClient, store: MirrorStore, namespace: str | None,
                       kind: str) -> _Counts:
    report = _Counts()
    # Rows are read before the list: a row written meanwhile is never taken for a deleted
    # object (see the module doc).
    existing = {row["uid"]: row for row in await asyncio.to_thread(store.rows, kind=kind)}
    phases = await asyncio.to_thread(store.transition_phases, kind)
    manifests = await _list(kube_client, namespace, kind)
    report.objects = len(manifests)
    listed: set[str] = set()
    for manifest in manifests:
        try:
            uid = manifest_uid(manifest)
            proj = project_as(manifest, kind)
        except ManifestError as exc:
            log.warning("resync: skipping an unusable %s: %s", kind, exc)
            report.skipped += 1
            continue
        listed.add(uid)
        known = phases.get(uid, set())
        if any(t["phase"] not in known for t in proj.transitions):
            report.transitions_added += await asyncio.to_thread(
                store.add_transitions, manifest, kind)
        elif proj.ledger:  # idempotent; a movement may be missing with every transition
            await asyncio.to_thread(store.add_ledger, manifest, kind)
        row = existing.get(uid)
        if row is None:
            changed = await asyncio.to_thread(store.upsert, manifest, kind)
            if changed:
                report.inserted += 1
            else:  # the operator wrote it (newer) since rows were read
                report.unchanged += 1
        elif row["deleted"] or not same_row(row, proj.row):
            changed = await _repair(kube_client, store, manifest, row, proj.version, kind)
            if changed:
                report.updated += 1
            else:
                report.unchanged += 1
        else:
            report.unchanged += 1
    for uid, row in existing.items():
        if uid in listed or row["deleted"]:
            continue
        if namespace is not None and row["namespace"] != namespace:
            continue
        if await asyncio.to_thread(store.mark_deleted, uid, away=True, kind=kind):
            report.marked_deleted += 1
    return report


async def _repair(kube_client: KubeClient, store: MirrorStore, manifest: dict[str, Any],
                  row: dict[str, Any], version: int, kind: str = SESSION) -> bool:
    revive = bool(row["deleted"])
    if int(row["version"]) <= version:
        return await asyncio.to_thread(store.repair, manifest, revive=revive, kind=kind)
    # The row claims a newer observation than the list: either the operator wrote one
    # since, or the row's key is corrupted. The object as it is now decides.
    meta = manifest.get("metadata") or {}
    try:
        fresh = await _getter(kube_client, kind)(str(meta.get("namespace")),
                                                 str(meta.get("name")))
    except NotFound:
        return False
    if manifest_uid(fresh) != manifest_uid(manifest):
        return False  # recreated under the same name; the next resync sees the new one
    fresh_version = project_as(fresh, kind).version
    if int(row["version"]) <= fresh_version:
        return await asyncio.to_thread(store.repair, fresh, revive=revive, kind=kind)
    # The key is corrupted. The writer may store a newer observation between the GET and
    # this write: only a row still holding the key read above is replaced.
    return await asyncio.to_thread(store.repair, fresh, expected_version=int(row["version"]),
                                   revive=revive, kind=kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paykube-resync",
        description="Rebuild or repair the MySQL mirror of PaymentSessions from the cluster "
                    "and print what changed as JSON. The database comes from the operator's "
                    f"settings (${DATABASE_URL_ENV}, or the RDS secret in AWS Secrets Manager "
                    "with PAYKUBE_SECRETS_SOURCE=aws and PAYKUBE_AWS_DATABASE_SECRET_ID).")
    parser.add_argument("--database-url", default="",
                        help=f"SQLAlchemy URL (overrides ${DATABASE_URL_ENV} and the AWS secret)")
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    parser.add_argument("--namespace", default=None, help="only this namespace")
    parser.add_argument("--no-migrate", action="store_true",
                        help="do not upgrade the schema first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(f"invalid settings: {exc}")
    if args.database_url:
        settings = settings.replace(database_url=SecretStr(args.database_url),
                                    database_url_file="")
    try:
        engine = build_engine(settings, build_aws_source(settings))
    except PaykubeError as exc:
        log.error("resync failed: %s", exc.message)
        return 1
    if engine is None:
        parser.error(f"no database: set {DATABASE_URL_ENV}, or PAYKUBE_SECRETS_SOURCE=aws "
                     "with PAYKUBE_AWS_DATABASE_SECRET_ID, or pass --database-url")
    try:
        report = asyncio.run(_main(engine, args.kubeconfig, args.namespace,
                                   migrate_first=not args.no_migrate))
    except PaykubeError as exc:
        log.error("resync failed: %s", exc.message)
        return 1
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0


async def _main(engine: Engine, kubeconfig: str | None, namespace: str | None, *,
                migrate_first: bool) -> ResyncReport:
    try:
        if migrate_first:
            await asyncio.to_thread(migrate, engine)
        async with KubeClient(KubeConfig.load(kubeconfig)) as client:
            return await resync(client, MirrorStore(engine), namespace)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
