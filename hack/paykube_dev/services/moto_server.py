"""moto's standalone server: AWS APIs (Secrets Manager for paykube) on a loopback port."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.proc import free_port
from paykube_dev.services._base import LOOPBACK, Service, http_status, new_base_dir


@dataclass(kw_only=True, eq=False)
class MotoServer(Service):
    """A moto server at `endpoint_url`; any access key is accepted."""

    what = "moto server"
    startup_timeout = 60.0

    port: int
    host: str = LOOPBACK
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a process whose AWS SDK should talk to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def reset(self) -> None:
        """Forget every resource (secrets, ...) created so far."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def ports(self) -> list[int]:
        return [self.port]

    def _argv(self) -> list[str | Path]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def _ready(self) -> bool:
        return http_status(f"{self.endpoint_url}/moto-api/") is not None


def start_moto_server(base_dir: Path | None = None, *, port: int | None = None) -> MotoServer:
    """Start moto (`python -m moto.server`, this interpreter) with its log in `base_dir`.

    Use the handle as a context manager, or call `close()`.
    """
    directory, owned = new_base_dir("moto", base_dir)
    server = MotoServer(base_dir=directory, log=directory / "moto.log",
                        port=port or free_port(), owns_base_dir=owned)
    return server.start()
