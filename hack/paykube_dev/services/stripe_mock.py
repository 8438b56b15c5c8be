"""stripe-mock (built by hack/build-k8s.sh at the version pinned in hack/versions.sh).

Stateless: answers every Stripe API call with a fixture shaped by Stripe's OpenAPI spec and
validates the request against it, so it checks request shapes, not lifecycles.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.proc import CACHE_DIR, free_port
from paykube_dev.services._base import LOOPBACK, Service, http_status, new_base_dir

VERSIONS_FILE = Path(__file__).resolve().parents[2] / "versions.sh"

API_KEY = "sk_test_123"
"""stripe-mock accepts any key of the form sk_test_*."""


def stripe_mock_binary() -> Path:
    """$PAYKUBE_STRIPE_MOCK, else the cached build of the pinned version."""
    override = os.environ.get("PAYKUBE_STRIPE_MOCK")
    if override:
        return Path(override)
    match = re.search(r"^STRIPE_MOCK_VERSION=\"?([^\"\s]+)", VERSIONS_FILE.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"STRIPE_MOCK_VERSION missing from {VERSIONS_FILE}")
    version = match.group(1)
    return CACHE_DIR / "bin" / f"stripe-mock-{version}" / "stripe-mock"


@dataclass(kw_only=True, eq=False)
class StripeMock(Service):
    """stripe-mock serving HTTP at `url` (and HTTPS at `https_url`, self-signed)."""

    what = "stripe-mock"
    startup_timeout = 30.0

    http_port: int
    https_port: int
    host: str = LOOPBACK
    api_key: str = API_KEY

    @property
    def url(self) -> str:
        """API base URL (use as the Stripe client's api_base)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self.https_port}"

    def ports(self) -> list[int]:
        return [self.http_port, self.https_port]

    def _argv(self) -> list[str | Path]:
        binary = stripe_mock_binary()
        if not binary.is_file():
            raise RuntimeError(f"{binary} not found; run hack/build-k8s.sh")
        # Both addresses explicitly: given only -http-addr, stripe-mock also opens HTTPS
        # on [::]:12112, which collides between parallel instances.
        return [binary, "-http-addr", f"{self.host}:{self.http_port}",
                "-https-addr", f"{self.host}:{self.https_port}"]

    def _ready(self) -> bool:
        status = http_status(f"{self.url}/v1/charges",
                             headers={"Authorization": f"Bearer {self.api_key}"})
        return status == 200


def start_stripe_mock(base_dir: Path | None = None, *, http_port: int | None = None,
                      https_port: int | None = None) -> StripeMock:
    """Start stripe-mock with its log in `base_dir` (a new temporary directory if None).

    Use the handle as a context manager, or call `close()`.
    """
    directory, owned = new_base_dir("stripe-mock", base_dir)
    http_port = http_port or free_port()
    while not https_port or https_port == http_port:
        https_port = free_port()
    server = StripeMock(base_dir=directory, log=directory / "stripe-mock.log",
                        http_port=http_port, https_port=https_port, owns_base_dir=owned)
    return server.start()
