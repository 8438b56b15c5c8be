"""Apache ActiveMQ 5 (Debian package `activemq`) as a foreground JVM with a STOMP connector.

The broker configuration is the repository's hack/activemq/activemq.xml (STOMP on loopback
only, KahaDB in this instance's directory, virtual topics); the Debian system service and
its /etc/activemq instances are never used.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stomp

from paykube_dev.pki import Pki
from paykube_dev.proc import free_port, port_open
from paykube_dev.services._base import LOOPBACK, Service, find_program, new_base_dir

CONF_DIR = Path(__file__).resolve().parents[2] / "activemq"
"""hack/activemq: activemq.xml and log4j.properties of the test broker."""

ACTIVEMQ_HOME = Path(os.environ.get("PAYKUBE_ACTIVEMQ_HOME", "/usr/share/activemq"))

# The test keystore's password: it guards a throwaway key of a loopback broker, nothing else.
_KEYSTORE_PASSWORD = "paykube-test-keystore"

# What /usr/bin/activemq passes to a Java > 8, so that the broker's reflection keeps working.
_JAVA_MODULE_OPTS = [
    "--add-reads=java.xml=java.logging",
    "--add-opens=java.base/java.security=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.naming/javax.naming.spi=ALL-UNNAMED",
    "--add-opens=java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.http=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.https=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.jar=ALL-UNNAMED",
    "--add-exports=jdk.xml.dom/org.w3c.dom.html=ALL-UNNAMED",
    "--add-exports=jdk.naming.rmi/com.sun.jndi.url.rmi=ALL-UNNAMED",
]

# Small and quick to start: a test broker moves few messages.
JVM_OPTS = ["-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true"]


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = find_program("java")
    if java is None:
        raise RuntimeError("java not found; run hack/install-services.sh")
    return java


@dataclass(kw_only=True, eq=False)
class ActiveMQ(Service):
    """A private ActiveMQ broker; STOMP on `host:stomp_port` and STOMP over TLS on
    `host:stomp_ssl_port` (as Amazon MQ serves it), with a cert of its own CA, `ca_cert`."""

    what = "ActiveMQ"
    startup_timeout = 90.0

    stomp_port: int
    stomp_ssl_port: int
    host: str = LOOPBACK

    @property
    def ca_cert(self) -> Path:
        """The CA that signed the broker's TLS cert (trust it to connect over TLS)."""
        return self.base_dir / "tls" / "ca.crt"

    @property
    def ssl_host_and_ports(self) -> list[tuple[str, int]]:
        return [(self.host, self.stomp_ssl_port)]

    @property
    def data_dir(self) -> Path:
        """activemq.data: KahaDB store (`kahadb/`) and temp storage."""
        return self.base_dir

    @property
    def host_and_ports(self) -> list[tuple[str, int]]:
        """What `stomp.Connection(...)` takes."""
        return [(self.host, self.stomp_port)]

    def connect(self, **connection_kwargs: Any) -> Any:
        """A STOMP 1.2 client (stomp.py), connected and waiting for CONNECTED. Disconnect it."""
        conn = stomp.Connection12(self.host_and_ports, **connection_kwargs)
        conn.connect(wait=True)
        return conn

    def ports(self) -> list[int]:
        return [self.stomp_port, self.stomp_ssl_port]

    def _keystore(self) -> Path:
        """The broker's PKCS#12 keystore, made once per instance (kept across restarts)."""
        keystore = self.base_dir / "tls" / "broker.p12"
        if not keystore.exists():
            pki = Pki.create(keystore.parent)
            keystore = pki.keystore(pki.issue("broker", "paykube-test-broker", server=True),
                                    _KEYSTORE_PASSWORD)
        return keystore

    def _argv(self) -> list[str | Path]:
        jar = ACTIVEMQ_HOME / "bin" / "activemq.jar"
        if not jar.is_file():
            raise RuntimeError(f"{jar} not found; run hack/install-services.sh")
        tmp = self.base_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        return [
            _java(), *JVM_OPTS, *_JAVA_MODULE_OPTS,
            f"-Djava.io.tmpdir={tmp}",
            f"-Dactivemq.classpath={CONF_DIR}",
            f"-Dactivemq.home={ACTIVEMQ_HOME}",
            f"-Dactivemq.base={self.base_dir}",
            f"-Dactivemq.conf={CONF_DIR}",
            f"-Dactivemq.data={self.data_dir}",
            f"-Dlog4j.configuration={(CONF_DIR / 'log4j.properties').as_uri()}",
            f"-Dstomp.port={self.stomp_port}",
            f"-Dstomp.ssl.port={self.stomp_ssl_port}",
            # No <sslContext> in activemq.xml: the stomp+ssl connector takes the JVM's.
            f"-Djavax.net.ssl.keyStore={self._keystore()}",
            f"-Djavax.net.ssl.keyStorePassword={_KEYSTORE_PASSWORD}",
            "-Djavax.net.ssl.keyStoreType=PKCS12",
            "-jar", jar, "start", f"xbean:{(CONF_DIR / 'activemq.xml').as_uri()}",
        ]

    def _ready(self) -> bool:
        """A real STOMP CONNECT is answered with CONNECTED (and the TLS connector, which
        starts after the plain one, listens)."""
        if not (port_open(self.stomp_port, self.host)
                and port_open(self.stomp_ssl_port, self.host)):
            return False
        conn = stomp.Connection12(self.host_and_ports, reconnect_attempts_max=1, timeout=2)
        try:
            conn.connect(wait=False)
            deadline = time.monotonic() + 5
            while not conn.is_connected():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
            return True
        except Exception:
            return False
        finally:
            if conn.is_connected():
                conn.disconnect()
            else:
                conn.transport.disconnect_socket()


def start_activemq(base_dir: Path | None = None, *, stomp_port: int | None = None) -> ActiveMQ:
    """Start a broker in `base_dir` (a new temporary directory if None) on a free port.

    Use the handle as a context manager, or call `close()`.
    """
    directory, owned = new_base_dir("activemq", base_dir)
    broker = ActiveMQ(base_dir=directory, log=directory / "activemq.log",
                      stomp_port=stomp_port or free_port(), stomp_ssl_port=free_port(),
                      owns_base_dir=owned)
    return broker.start()
