"""Session-wide private backing services: ActiveMQ, MariaDB, moto (Secrets Manager), stripe-mock.

Each runs on free loopback ports with its directory (data and log) under pytest's basetemp.
A test that stops a service (outage tests) must start it again before it ends, e.g. in a
`finally:`; `start()` keeps the ports and the data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paykube_dev.services import (
    ActiveMQ,
    MariaDB,
    MotoServer,
    StripeMock,
    start_activemq,
    start_mariadb,
    start_moto_server,
    start_stripe_mock,
)


@pytest.fixture(scope="session")
def activemq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActiveMQ]:
    with start_activemq(tmp_path_factory.mktemp("activemq")) as broker:
        yield broker


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    with start_mariadb(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with start_moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeMock]:
    with start_stripe_mock(tmp_path_factory.mktemp("stripe-mock")) as server:
        yield server
