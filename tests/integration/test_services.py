"""Smoke tests of the real backing services started by tests/plugins/services_fixtures.py."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
import sqlalchemy

from paykube_dev.proc import port_open
from paykube_dev.services import ActiveMQ, MariaDB, MotoServer, StripeMock
from tests.plugins.stomp_helpers import Frames

pytestmark = pytest.mark.integration

# pymysql ships no type information; the services expose SQLAlchemy URLs, this test also
# speaks to MariaDB with the bare driver.
pymysql: Any = importlib.import_module("pymysql")


@contextmanager
def stomp_client(broker: ActiveMQ) -> Iterator[tuple[Any, Frames]]:
    frames = Frames()
    conn = broker.connect()
    conn.set_listener("frames", frames)
    try:
        yield conn, frames
    finally:
        if conn.is_connected():
            conn.disconnect()
    assert frames.errors.empty(), frames.errors.get()


def send_persistent(broker: ActiveMQ, destination: str, body: str) -> None:
    """Send a persistent message and wait for the broker's receipt (so it is stored)."""
    with stomp_client(broker) as (conn, frames):
        receipt = f"r-{uuid.uuid4().hex}"
        conn.send(destination, body, headers={"persistent": "true", "receipt": receipt},
                  content_type="application/json")
        assert frames.receipt() == receipt


def receive_one(broker: ActiveMQ, destination: str) -> Any:
    with stomp_client(broker) as (conn, frames):
        conn.subscribe(destination, id="s1", ack="client-individual")
        frame = frames.message()
        conn.ack(frame.headers["ack"])  # STOMP 1.2: acknowledge by the frame's ack id
        return frame


def test_stomp_send_with_receipt_and_receive(activemq: ActiveMQ) -> None:
    destination = f"/queue/smoke.{uuid.uuid4().hex}"
    with stomp_client(activemq) as (conn, frames):
        conn.subscribe(destination, id="sub", ack="auto")
        conn.send(destination, '{"hello": 1}', headers={"persistent": "true", "receipt": "r1"})
        assert frames.receipt() == "r1"
        frame = frames.message()
    assert frame.body == '{"hello": 1}'
    assert frame.headers["destination"] == destination
    assert frame.headers["persistent"] == "true"


def test_virtual_topic_copies_to_every_consumer_queue(activemq: ActiveMQ) -> None:
    topic = f"VirtualTopic.paykube-{uuid.uuid4().hex[:8]}"
    consumers = ("Consumer.billing", "Consumer.audit")
    with stomp_client(activemq) as (conn, frames):
        for index, prefix in enumerate(consumers):  # the queues exist once subscribed to
            conn.subscribe(f"/queue/{prefix}.{topic}", id=f"s{index}", ack="auto")
        conn.send(f"/topic/{topic}", "event", headers={"persistent": "true", "receipt": "r"})
        assert frames.receipt() == "r"
        received = {frames.message().headers["destination"] for _ in consumers}
    assert received == {f"/queue/{prefix}.{topic}" for prefix in consumers}


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_persistent_message_survives_broker_outage(activemq: ActiveMQ, outage: str) -> None:
    destination = f"/queue/outage.{uuid.uuid4().hex}"
    send_persistent(activemq, destination, f"survives {outage}")
    port = activemq.stomp_port
    try:
        activemq.stop() if outage == "stop" else activemq.kill()
        assert not activemq.running
        assert not port_open(port)
    finally:
        activemq.start()
    assert activemq.stomp_port == port
    assert receive_one(activemq, destination).body == f"survives {outage}"


def test_mariadb_pymysql_and_data_survive_restart(mariadb: MariaDB) -> None:
    url = sqlalchemy.make_url(mariadb.url)

    def connect() -> Any:
        return pymysql.connect(host=url.host, port=url.port, user=url.username,
                               password=url.password, database=url.database, autocommit=True)

    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS smoke_restart")
            cur.execute("CREATE TABLE smoke_restart (id INT PRIMARY KEY, note VARCHAR(64)) "
                        "ENGINE=InnoDB")
            cur.execute("INSERT INTO smoke_restart VALUES (%s, %s)", (1, "before restart ✓"))
            cur.execute("SELECT @@character_set_server, @@time_zone")
            assert cur.fetchone() == ("utf8mb4", "+00:00")
    finally:
        conn.close()

    port = mariadb.port
    try:
        mariadb.stop()
        assert not port_open(port)
    finally:
        mariadb.start()
    assert mariadb.port == port

    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT note FROM smoke_restart WHERE id = 1")
            assert cur.fetchone() == ("before restart ✓",)
            cur.execute("DROP TABLE smoke_restart")
    finally:
        conn.close()


def test_mariadb_sqlalchemy_url_and_extra_database(mariadb: MariaDB) -> None:
    engine = sqlalchemy.create_engine(mariadb.create_database("paykube_extra"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT DATABASE()").scalar() == "paykube_extra"
    finally:
        engine.dispose()


def test_moto_secretsmanager_create_and_get(moto_server: MotoServer) -> None:
    client = boto3.client(
        "secretsmanager", endpoint_url=moto_server.endpoint_url, region_name=moto_server.region,
        aws_access_key_id=moto_server.access_key_id,
        aws_secret_access_key=moto_server.secret_access_key,
    )
    name = f"paykube/test/{uuid.uuid4().hex[:8]}"
    created = client.create_secret(Name=name, SecretString='{"password": "s3cret"}')
    assert created["Name"] == name
    assert client.get_secret_value(SecretId=name)["SecretString"] == '{"password": "s3cret"}'


def test_stripe_mock_creates_checkout_session(stripe_mock: StripeMock) -> None:
    response = httpx.post(
        f"{stripe_mock.url}/v1/checkout/sessions",
        headers={"Authorization": f"Bearer {stripe_mock.api_key}"},
        data={
            "mode": "payment",
            "success_url": "https://example.com/paid",
            "line_items[0][price_data][currency]": "eur",
            "line_items[0][price_data][unit_amount]": "1999",
            "line_items[0][price_data][product_data][name]": "Subscription",
            "line_items[0][quantity]": "1",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["object"] == "checkout.session"
    assert session["id"].startswith("cs_")


def test_stripe_mock_rejects_malformed_request(stripe_mock: StripeMock) -> None:
    response = httpx.post(
        f"{stripe_mock.url}/v1/checkout/sessions",
        headers={"Authorization": f"Bearer {stripe_mock.api_key}"},
        data={"mode": "not-a-mode"}, timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
