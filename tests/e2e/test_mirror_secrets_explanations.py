"""Reporting mirror, AWS Secrets Manager credentials and explained errors, all through the
real operator (and webhook) processes against MariaDB, moto server and a local
OpenAI-compatible server."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx

from paykube.mirror.projection import project, same_row
from paykube.mirror.store import MirrorStore, make_engine
from paykube_dev.programs import start_webhook
from paykube_dev.services import MariaDB, MotoServer
from paykube_dev.stripe_emulator import sign_payload
from paykube_dev.stripe_emulator.model import mask_key
from tests.plugins.openai_server import ANSWER, threaded_openai
from tests.plugins.paykube_fixtures import (
    API_KEY,
    METRICS_AUTH,
    WEBHOOK_SECRET,
    Solo,
    Stack,
    create_provider,
    provider_ref,
    solo_operator,
)


def mirror_matches(store: MirrorStore, objects: list[dict[str, Any]]) -> bool:
    """Every row equals what its object projects to (all columns, as resync compares them)
    and the ledger has the object's history."""
    for obj in objects:
        row = store.row(obj["metadata"]["uid"])
        phases = [h["phase"] for h in obj["status"]["history"]]
        if row is None or row["deleted"] or not same_row(row, project(obj).row):
            return False
        if [t["phase"] for t in store.transitions(obj["metadata"]["uid"])] != phases:
            return False
    return True


def assert_no_secret_leaked(stack: Stack, namespace: str, logs: list[Path],
                            values: list[str]) -> None:
    """No secret value in the processes' logs nor in the namespace's Kubernetes Events."""
    events = json.loads(stack.kube.kubectl("get", "events", "-n", namespace, "-o",
                                           "json").stdout)["items"]
    assert events, "expected Events to search"
    texts = {"events": json.dumps(events), **{p.name: p.read_text() for p in logs}}
    assert all(texts.values())
    for value in values:
        assert value, "an empty value would prove nothing"
        for where, text in texts.items():
            assert value not in text, f"a secret value leaked into {where}"


def wait_mirror(stack: Stack, solo: Solo, store: MirrorStore, names: list[str],
                timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        objects = [stack.get(solo.namespace, n) for n in names]
        try:
            if mirror_matches(store, objects):
                return
        except Exception:  # noqa: S110 -- the database may still be coming back
            pass
        time.sleep(0.5)
    raise AssertionError("the mirror did not converge to the cluster")


def test_mirror_follows_the_cluster_through_a_database_outage(
        stack: Stack, mariadb: MariaDB, tmp_path: Path) -> None:
    url = mariadb.create_database(f"mirror_{uuid.uuid4().hex[:8]}")
    store = MirrorStore(make_engine(url))
    with solo_operator(stack, tmp_path, PAYKUBE_DATABASE_URL=url) as solo:
        for name in ("paid", "canceled", "open"):
            stack.apply(solo.namespace, name)
        sessions = {n: stack.wait_phase(solo.namespace, n, "Open")["status"]["sessionId"]
                    for n in ("paid", "canceled")}
        solo.emulator.pay(sessions["paid"])
        stack.kube.kubectl("patch", "paysess", "canceled", "-n", solo.namespace,
                           "--type=merge", "-p", '{"spec": {"cancel": true}}')
        stack.wait_phase(solo.namespace, "paid", "Paid")
        stack.wait_phase(solo.namespace, "canceled", "Canceled")
        wait_mirror(stack, solo, store, ["paid", "canceled", "open"])

        mariadb.stop()
        try:
            names = [f"during-outage-{i:02d}" for i in range(25)]  # 50 transitions
            for name in names:
                stack.apply(solo.namespace, name)
            for name in names:
                stack.wait_phase(solo.namespace, name, "Open")
        finally:
            mariadb.start()
        wait_mirror(stack, solo, store, ["paid", "canceled", "open", *names], timeout=90)
        assert_no_secret_leaked(stack, solo.namespace, [tmp_path / "operator.log"],
                                [mariadb.password, API_KEY, WEBHOOK_SECRET, METRICS_AUTH[1]])


def test_mirror_credentials_from_an_rds_secret(
        stack: Stack, mariadb: MariaDB, moto_server: MotoServer, tmp_path: Path) -> None:
    """The database's address and credentials come only from an RDS-format secret."""
    name = f"rds_{uuid.uuid4().hex[:8]}"
    url = mariadb.create_database(name)
    secret_id = f"rds!db-{uuid.uuid4().hex[:8]}"
    aws_client(moto_server).create_secret(Name=secret_id, SecretString=json.dumps({
        "engine": "mariadb", "host": "127.0.0.1", "port": mariadb.port, "dbname": name,
        "username": mariadb.user, "password": mariadb.password}))
    store = MirrorStore(make_engine(url))
    with solo_operator(stack, tmp_path, **moto_server.env(), PAYKUBE_SECRETS_SOURCE="aws",
                       PAYKUBE_AWS_REGION=moto_server.region,
                       PAYKUBE_AWS_ENDPOINT_URL=moto_server.endpoint_url,
                       PAYKUBE_AWS_DATABASE_SECRET_ID=secret_id) as solo:
        stack.apply(solo.namespace, "via-rds-secret")
        stack.wait_phase(solo.namespace, "via-rds-secret", "Open")
        wait_mirror(stack, solo, store, ["via-rds-secret"])
        assert_no_secret_leaked(stack, solo.namespace, [tmp_path / "operator.log"],
                                [mariadb.password, API_KEY, WEBHOOK_SECRET, METRICS_AUTH[1]])


def aws_client(moto_server: MotoServer) -> Any:
    return boto3.client("secretsmanager", region_name=moto_server.region,
                        endpoint_url=moto_server.endpoint_url,
                        aws_access_key_id=moto_server.access_key_id,
                        aws_secret_access_key=moto_server.secret_access_key)


def test_stripe_credentials_from_aws_rotate_without_restart_and_never_leak(
        stack: Stack, moto_server: MotoServer, tmp_path: Path) -> None:
    secret_id = f"paykube/stripe-{uuid.uuid4().hex[:6]}"
    first, second = (f"sk_test_aws_{uuid.uuid4().hex[:10]}" for _ in range(2))
    signing = f"whsec_aws_{uuid.uuid4().hex[:10]}"
    client = aws_client(moto_server)
    client.create_secret(Name=secret_id, SecretString=json.dumps({"apiKey": first}))
    # The signing secrets in a secret of their own: the webhook never reads the key's.
    webhook_secret_id = f"{secret_id}-webhook"
    client.create_secret(Name=webhook_secret_id,
                         SecretString=json.dumps({"webhookSecrets": [signing]}))
    aws = {**moto_server.env(), "PAYKUBE_SECRETS_SOURCE": "aws",
           "PAYKUBE_AWS_REGION": moto_server.region,
           "PAYKUBE_AWS_ENDPOINT_URL": moto_server.endpoint_url,
           "PAYKUBE_AWS_STRIPE_SECRET_ID": secret_id, "PAYKUBE_SECRETS_TTL": "1",
           "PAYKUBE_STRIPE_API_KEY": "", "PAYKUBE_WEBHOOK_SECRETS": ""}
    with solo_operator(stack, tmp_path, **aws) as solo:
        stack.apply(solo.namespace, "before-rotation")
        stack.wait_phase(solo.namespace, "before-rotation", "Open")
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"apiKey": second}))
        time.sleep(1.5)  # the source's TTL
        stack.apply(solo.namespace, "after-rotation")
        stack.wait_phase(solo.namespace, "after-rotation", "Open")
        accounts = [r["account"] for r in solo.emulator.requests("/v1/checkout/sessions")]
        assert accounts == [mask_key(first), mask_key(second)]

        webhook_env = {k: v for k, v in aws.items() if k != "PAYKUBE_AWS_STRIPE_SECRET_ID"}
        webhook = start_webhook(stack.kube.kubeconfig, tmp_path / "webhook.log",
                                stack.operator_env(**webhook_env,
                                                   PAYKUBE_AWS_WEBHOOK_SECRET_ID=webhook_secret_id))
        try:
            body = b'{"id": "evt_aws", "type": "charge.succeeded", "data": {"object": {}}}'
            t = int(time.time())
            response = httpx.post(f"{webhook.url}/webhooks/stripe", content=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign_payload(body, signing, t)})
            assert response.status_code == 200
        finally:
            webhook.stop()

        assert_no_secret_leaked(stack, solo.namespace,
                                [tmp_path / "operator.log", tmp_path / "webhook.log"],
                                [first, second, signing, METRICS_AUTH[1]])
        objects = stack.kube.kubectl("get", "paysess", "-n", solo.namespace, "-o",
                                     "json").stdout
        for value in (first, second, signing):
            assert value not in objects, "a secret value leaked into the objects"


def test_missing_aws_secret_makes_the_webhook_not_ready_with_one_clear_line(
        stack: Stack, moto_server: MotoServer, tmp_path: Path) -> None:
    env = stack.operator_env(**moto_server.env(), PAYKUBE_SECRETS_SOURCE="aws",
                             PAYKUBE_AWS_REGION=moto_server.region,
                             PAYKUBE_AWS_ENDPOINT_URL=moto_server.endpoint_url,
                             PAYKUBE_AWS_WEBHOOK_SECRET_ID="paykube/does-not-exist")
    webhook = start_webhook(stack.kube.kubeconfig, tmp_path / "webhook.log", env,
                            ready_path="/healthz")
    try:
        ready = httpx.get(f"{webhook.url}/readyz")
        assert ready.status_code == 503
        assert "CredentialsMissing" in ready.text
    finally:
        webhook.stop()
    log = (tmp_path / "webhook.log").read_text()
    assert "paykube/does-not-exist" in log


def test_errors_are_explained_by_catalog_at_once_and_by_the_model_later(
        stack: Stack, tmp_path: Path) -> None:
    email, site, person = "jane.doe@example.com", "https://private.example.org/x", "Jane Doe"
    model_key = f"sk-model-secret-{uuid.uuid4().hex[:8]}"
    with threaded_openai() as model:
        model.mode = "slow"  # holds every request until released (or 20 s)
        # A model timeout far longer than the wait: only a reconciler that does not wait
        # for the model writes status.error within seconds.
        env = {"PAYKUBE_EXPLAIN_BASE_URL": model.base_url, "PAYKUBE_EXPLAIN_MODEL": "test",
               "PAYKUBE_EXPLAIN_API_KEY": model_key, "PAYKUBE_EXPLAIN_TIMEOUT": "30",
               "PAYKUBE_EXPLAIN_RETRY": "2"}
        with solo_operator(stack, tmp_path, **env) as solo:
            # The provider's message carries a personal name, an e-mail and a URL; the
            # name is not quoted, as in Stripe's own messages.
            solo.emulator.add_fault("stripe_error", count=None, error={
                "status": 400, "code": "paykube_test_unknown_code", "param": "customer_email",
                "message": f"Customer {person} ({email}) at {site} cannot pay with this "
                           "account."})
            began = time.monotonic()
            stack.apply(solo.namespace, "unexplained", customerEmail=email,
                        metadata={"buyer": person})
            failed = stack.wait_phase(solo.namespace, "unexplained", "Failed", timeout=30)
            elapsed = time.monotonic() - began
            assert elapsed < 8, f"status.error took {elapsed:.1f}s: waited for the model?"
            error = failed["status"]["error"]
            assert error["providerCode"] == "paykube_test_unknown_code"
            assert "explanation" not in error, "written at once, without waiting for the model"
            stack.wait_for(solo.namespace, "unexplained", lambda o: bool(model.requests),
                           timeout=10, what="the model asked")
            assert "explanation" not in stack.get(solo.namespace, "unexplained")[
                "status"]["error"]

            model.mode = "answer"
            model.release_from_thread()
            explained = stack.wait_for(
                solo.namespace, "unexplained",
                lambda o: bool(o["status"]["error"].get("explanation")), timeout=60,
                what="explanation filled in")
            assert explained["status"]["error"]["explanation"] == ANSWER
            prompts = json.dumps([r["body"] for r in model.requests])
            for private in (email, "jane.doe", site, "private.example.org", person, "Jane",
                            "Doe", model_key, solo.namespace, API_KEY):
                assert private not in prompts, private
            assert "paykube_test_unknown_code" in prompts
            # Not even the provider's wording: it may quote another tenant's data.
            assert "cannot pay with this account" not in prompts

            solo.emulator.clear_faults()
            revoked = f"sk_test_revoked_{uuid.uuid4().hex[:8]}"
            solo.emulator.revoke_key(revoked)
            create_provider(stack.kube, solo.namespace, "revoked", revoked)
            asked = len(model.requests)
            stack.apply(solo.namespace, "catalog", providerRef=provider_ref("revoked"))
            error = stack.wait_phase(solo.namespace, "catalog", "Failed")["status"]["error"]
            assert error["providerCode"] == "api_key_expired"
            assert error["explanation"], "the curated catalog answers with no network"
            assert len(model.requests) == asked
            assert_no_secret_leaked(stack, solo.namespace, [tmp_path / "operator.log"],
                                    [model_key, API_KEY, revoked, WEBHOOK_SECRET,
                                     METRICS_AUTH[1]])
