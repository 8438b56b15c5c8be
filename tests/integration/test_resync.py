"""`resync` against the real control plane and MariaDB: it rebuilds an empty mirror from the
cluster, repairs stale, corrupted and missing rows and ledger entries, flags rows of deleted
objects, and reports what it changed (also through its command line)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from paykube.api.types import Phase
from paykube.kube.client import KubeClient
from paykube.mirror.follow import follow
from paykube.mirror.migrate import migrate
from paykube.mirror.projection import ordering_key, project, same_row
from paykube.mirror.resync import ResyncReport, resync
from paykube.mirror.schema import payment_sessions
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube_dev.kube import ControlPlane
from paykube_dev.services import MariaDB, MotoServer


@pytest.fixture
def namespace(unmanaged_namespace: str) -> str:
    """Objects here must not be touched by the shared test operator."""
    return unmanaged_namespace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

REPO = Path(__file__).resolve().parents[2]
SIMPLE = REPO / "crds" / "examples" / "paymentsession-simple.yaml"


def _history(*phases: str) -> list[dict[str, Any]]:
    return [{"phase": p, "at": f"2024-05-01T10:0{i}:00Z", "source": "operator",
             "published": True} for i, p in enumerate(phases)]


# name -> status written through the status subresource (None: no status yet)
STATUSES: dict[str, dict[str, Any] | None] = {
    "order-open": {"phase": "Open", "sessionId": "cs_open", "url": "https://pay.example/o",
                   "expiresAt": "2024-05-02T10:00:00Z", "history": _history("Pending", "Open")},
    "order-paid": {"phase": "Paid", "sessionId": "cs_paid", "paymentIntentId": "pi_paid",
                   "paymentStatus": "paid", "amountTotal": 1999, "currency": "usd",
                   "history": _history("Pending", "Open", "Paid")},
    "order-expired": {"phase": "Expired", "sessionId": "cs_exp",
                      "history": _history("Pending", "Open", "Expired")},
    "order-failed": {"phase": "Failed",
                     "error": {"code": "ProviderRejected", "message": "amount too small",
                               "providerCode": "amount_too_small", "retryable": False},
                     "history": _history("Pending", "Failed")},
    "order-new": None,
}


def create_sessions(kube: ControlPlane, namespace: str) -> None:
    template = yaml.safe_load(SIMPLE.read_text())
    docs = []
    for name in STATUSES:
        doc = json.loads(json.dumps(template))
        doc["metadata"] = {"name": name, "labels": {"test": "resync"}}
        doc["spec"]["metadata"] = {"order": name}
        docs.append(doc)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    for name, status in STATUSES.items():
        if status is not None:
            kube.kubectl("patch", "paymentsession", name, "-n", namespace,
                         "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": status}))


async def cluster(kube_client: KubeClient, namespace: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in await kube_client.list_sessions(namespace)}


def assert_mirror_equals_cluster(store: MirrorStore, objects: dict[str, dict[str, Any]]) -> None:
    for name, m in objects.items():
        row = store.row(m["metadata"]["uid"])
        assert row is not None, name
        proj = project(m)
        assert same_row(row, proj.row), (name, {k: (row[k], v) for k, v in proj.row.items()
                                                if row[k] != v})
        assert row["deleted"] is False
        ledger = [t["phase"] for t in store.transitions(m["metadata"]["uid"])]
        assert ledger == [h["phase"] for h in (m.get("status") or {}).get("history", [])]


@pytest.fixture(scope="module")
def db_url(mariadb: MariaDB) -> str:
    url = mariadb.create_database(f"resync_{uuid.uuid4().hex[:10]}")
    migrate(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM payment_session_transitions"))
        conn.execute(text("DELETE FROM payment_sessions"))
    yield engine
    engine.dispose()


async def test_resync_rebuilds_and_repairs_the_mirror(
    kube: ControlPlane, namespace: str, kube_client: KubeClient, engine: Engine,
) -> None:
    create_sessions(kube, namespace)
    objects = await cluster(kube_client, namespace)
    assert len(objects) == len(STATUSES)
    store = MirrorStore(engine)
    history_entries = sum(len(s["history"]) for s in STATUSES.values() if s)

    # An empty mirror is rebuilt.
    report = await resync(kube_client, store, namespace)
    assert report == ResyncReport(objects=5, inserted=5, transitions_added=history_entries)
    assert_mirror_equals_cluster(store, objects)
    paid = store.row(objects["order-paid"]["metadata"]["uid"])
    assert paid is not None
    assert (paid["phase"], paid["amount"], paid["description"]) == (
        "Paid", 1999, "Annual subscription")
    assert paid["metadata_json"] == {"order": "order-paid"}

    # Nothing to do the second time.
    assert await resync(kube_client, store, namespace) == ResyncReport(objects=5, unchanged=5)

    # Break it: a stale phase, a row whose ordering key claims to be newer than the object,
    # a lost row with its ledger, lost ledger rows, an object changed while the mirror
    # was not looking, an object deleted.
    uid = {name: m["metadata"]["uid"] for name, m in objects.items()}
    with engine.begin() as conn:
        conn.execute(text("UPDATE payment_sessions SET phase='Pending', phase_rank=0, "
                          "session_id=NULL WHERE uid=:u"), {"u": uid["order-paid"]})
        conn.execute(text("UPDATE payment_sessions SET phase='Paid', "
                          "version=version + (1 << 58) WHERE uid=:u"),
                     {"u": uid["order-expired"]})
        conn.execute(text("DELETE FROM payment_sessions WHERE uid=:u"), {"u": uid["order-open"]})
        conn.execute(text("DELETE FROM payment_session_transitions WHERE uid=:u"),
                     {"u": uid["order-open"]})
        conn.execute(text("DELETE FROM payment_session_transitions WHERE uid=:u "
                          "AND phase IN ('Open', 'Paid')"), {"u": uid["order-paid"]})
    kube.kubectl("patch", "paymentsession", "order-new", "-n", namespace,
                 "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                     "phase": "Open", "sessionId": "cs_new", "history": _history("Pending",
                                                                                 "Open")}}))
    kube.kubectl("delete", "paymentsession", "order-failed", "-n", namespace, "--wait=true")

    report = await resync(kube_client, store, namespace)
    assert report == ResyncReport(
        objects=4,
        inserted=1,  # order-open
        updated=3,  # order-paid (stale), order-expired (bogus key), order-new (changed)
        transitions_added=2 + 2 + 2,  # order-open, order-paid, order-new
        marked_deleted=1,  # order-failed
        unchanged=0,
    )
    objects = await cluster(kube_client, namespace)
    assert_mirror_equals_cluster(store, objects)
    failed = store.row(uid["order-failed"])
    assert failed is not None
    assert (failed["deleted"], failed["phase"]) == (True, "Failed")
    assert await resync(kube_client, store, namespace) == ResyncReport(objects=4, unchanged=4)


def _entry_point(name: str) -> list[str]:
    """argv running the console script `name` as declared in pyproject.toml, the way the
    wrapper pip generates does (so the test needs no reinstall of the package)."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts[name].split(":")
    return [sys.executable, "-c",
            f"import sys; from {module} import {function}; sys.exit({function}())"]


def _env(kube: ControlPlane, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAYKUBE_", "AWS_"))}
    return {**env, "KUBECONFIG": str(kube.kubeconfig),
            "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("operator", "hack")),
            **extra}


def test_resync_command_line(kube: ControlPlane, namespace: str, db_url: str,
                             engine: Engine) -> None:
    create_sessions(kube, namespace)
    env = _env(kube, PAYKUBE_DATABASE_URL=db_url)
    argv = [*_entry_point("paykube-resync"), "--namespace", namespace]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    history_entries = sum(len(s["history"]) for s in STATUSES.values() if s)
    assert report == {"objects": 5, "inserted": 5, "updated": 0,
                      "transitions_added": history_entries, "marked_deleted": 0,
                      "unchanged": 0, "skipped": 0,
                      **{f"refund_{k}": 0 for k in ("objects", "inserted", "updated",
                                                    "transitions_added", "marked_deleted",
                                                    "unchanged", "skipped")}}
    # All namespaces (other tests' objects included): ours are now unchanged.
    result = subprocess.run(argv[:-2], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["objects"] >= 5
    missing = subprocess.run(argv, env=_env(kube), capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2
    assert "PAYKUBE_DATABASE_URL" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_resync_command_takes_the_database_from_the_rds_secret(
    kube: ControlPlane, namespace: str, db_url: str, engine: Engine, mariadb: MariaDB,
    moto_server: MotoServer,
) -> None:
    """Configured like the operator with PAYKUBE_SECRETS_SOURCE=aws: no database URL, the
    credentials (and where to connect) from an RDS-format secret in Secrets Manager."""
    create_sessions(kube, namespace)
    admin = boto3.session.Session(
        aws_access_key_id=moto_server.access_key_id,
        aws_secret_access_key=moto_server.secret_access_key, region_name=moto_server.region,
    ).client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    secret_id = f"paykube/test/resync-{uuid.uuid4().hex[:8]}"
    admin.create_secret(Name=secret_id, SecretString=json.dumps({
        "engine": "mariadb", "host": mariadb.host, "port": mariadb.port,
        "username": mariadb.user, "password": mariadb.password,
        "dbname": make_url(db_url).database}))
    env = _env(kube, PAYKUBE_SECRETS_SOURCE="aws", PAYKUBE_AWS_DATABASE_SECRET_ID=secret_id,
               PAYKUBE_AWS_REGION=moto_server.region,
               PAYKUBE_AWS_ENDPOINT_URL=moto_server.endpoint_url,
               AWS_ACCESS_KEY_ID=moto_server.access_key_id,
               AWS_SECRET_ACCESS_KEY=moto_server.secret_access_key)
    argv = [*_entry_point("paykube-resync"), "--namespace", namespace]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == len(STATUSES)
    assert mariadb.password not in result.stderr + result.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM payment_sessions WHERE namespace=:n"),
                            {"n": namespace}).scalar() == len(STATUSES)

    # A missing secret: one clear line, exit 1, no traceback, no value.
    env["PAYKUBE_AWS_DATABASE_SECRET_ID"] = f"{secret_id}-missing"
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert "resync failed" in result.stderr and "was not found" in result.stderr
    assert "Traceback" not in result.stderr


async def test_repair_of_a_corrupted_key_keeps_a_newer_write_made_meanwhile(
    kube: ControlPlane, namespace: str, kube_client: KubeClient, engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's writer stores a real transition between resync's fresh GET and its
    repair of a row whose ordering key is corrupted: the newer write stays."""
    create_sessions(kube, namespace)
    store = MirrorStore(engine)
    await resync(kube_client, store, namespace)
    objects = await cluster(kube_client, namespace)
    uid = objects["order-open"]["metadata"]["uid"]
    # The key claims Paid (terminal rank, two history entries, a tiny resourceVersion): above
    # the object as it is (Open), below the real Paid observation to come.
    bogus = ordering_key(Phase.PAID.rank, 2, 1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE payment_sessions SET phase='Paid', version=:v WHERE uid=:u"),
                     {"v": bogus, "u": uid})

    get_session = kube_client.get_session
    newer: list[dict[str, Any]] = []

    async def racing_get(ns: str, name: str) -> dict[str, Any]:
        fresh = await get_session(ns, name)
        if name == "order-open" and not newer:
            await asyncio.to_thread(
                kube.kubectl, "patch", "paymentsession", name, "-n", ns,
                "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                    "phase": "Paid", "paymentIntentId": "pi_race", "paymentStatus": "paid",
                    "history": _history("Pending", "Open", "Paid")}}))
            newer.append(await get_session(ns, name))
            assert await asyncio.to_thread(store.upsert, newer[0])  # the operator's writer
        return fresh

    monkeypatch.setattr(kube_client, "get_session", racing_get)
    report = await resync(kube_client, store, namespace)
    assert newer, "resync did not read the object again"
    assert (report.updated, report.unchanged) == (0, 5)
    row = store.row(uid)
    assert row is not None
    assert same_row(row, project(newer[0]).row)
    assert (row["phase"], row["version"]) == ("Paid", project(newer[0]).version)
    assert row["version"] > bogus

    # Once the race is over, resync finds the mirror equal to the cluster.
    monkeypatch.undo()
    assert await resync(kube_client, store, namespace) == ResyncReport(objects=5, unchanged=5)
    assert_mirror_equals_cluster(store, await cluster(kube_client, namespace))


async def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_follow_flags_objects_deleted_while_the_watch_was_away(
    kube: ControlPlane, namespace: str, kube_client: KubeClient, engine: Engine,
) -> None:
    create_sessions(kube, namespace)
    objects = await cluster(kube_client, namespace)
    uid = {name: m["metadata"]["uid"] for name, m in objects.items()}
    store = MirrorStore(engine)
    writer = MirrorWriter(store, initial_backoff=0.05, max_backoff=0.5)
    writer.start()
    try:
        task = asyncio.create_task(follow(kube_client, writer, namespace, (namespace,)))
        await _until(lambda: all(store.row(u) is not None for u in uid.values()))
        task.cancel()  # the watch is away...
        with contextlib.suppress(asyncio.CancelledError):
            await task

        # ... while an object is deleted. Rows the list cannot speak for: one of another
        # namespace, one observed after any list could have been taken (created since).
        kube.kubectl("delete", "paymentsession", "order-expired", "-n", namespace,
                     "--wait=true")
        other = project(objects["order-paid"]).row | {
            "uid": str(uuid.uuid4()), "namespace": f"{namespace}-other"}
        later = project(objects["order-paid"]).row | {
            "uid": str(uuid.uuid4()), "version": ordering_key(3, 3, (1 << 52) - 1)}
        with engine.begin() as conn:
            for row in (other, later):
                conn.execute(payment_sessions.insert().values(
                    **row, updated_at=dt.datetime(2024, 5, 1)))

        task = asyncio.create_task(follow(kube_client, writer, namespace, (namespace,)))
        try:
            await _until(lambda: (store.row(uid["order-expired"]) or {}).get("deleted"))
            assert await writer.flush(10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        deleted = {r["uid"] for r in store.rows() if r["deleted"]}
        assert deleted == {uid["order-expired"]}
        assert writer.marked_absent == 1
    finally:
        await writer.aclose()
