"""The real backing services of the test environment, each private and on loopback.

Each `start_*` function starts one service on free ports in its own directory (a new
temporary one unless given) and returns a started handle. Handles are context managers
and have `start()`, `stop()` (graceful), `kill()` (crash), `restart()` and `close()`;
stop and start keep the ports and the data, for outage tests. Logs go to `handle.log`
inside `handle.base_dir`.

    with start_activemq() as broker, start_mariadb() as db:
        ...  # broker.host_and_ports, db.url

Install the system packages with hack/install-services.sh.
"""

from paykube_dev.services._base import Service
from paykube_dev.services.activemq import ActiveMQ, start_activemq
from paykube_dev.services.mariadb import MariaDB, start_mariadb
from paykube_dev.services.moto_server import MotoServer, start_moto_server
from paykube_dev.services.stripe_mock import StripeMock, start_stripe_mock

__all__ = [
    "ActiveMQ",
    "MariaDB",
    "MotoServer",
    "Service",
    "StripeMock",
    "start_activemq",
    "start_mariadb",
    "start_moto_server",
    "start_stripe_mock",
]
