"""A container registry on loopback (Debian `docker-registry`, the CNCF distribution), from
which the node's containerd pulls every image: no other registry is reachable or used.

Its storage lives in the cache ($PAYKUBE_CACHE/registry), so an image pushed by an earlier
run is there already (a second push moves no layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paykube_dev.proc import CACHE_DIR, free_port
from paykube_dev.services._base import LOOPBACK, Service, find_program, http_status

STORAGE = CACHE_DIR / "registry"


@dataclass(kw_only=True, eq=False)
class Registry(Service):
    what = "docker-registry"
    startup_timeout = 30.0

    port: int
    storage: Path = STORAGE

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def ports(self) -> list[int]:
        return [self.port]

    def _prepare(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: warn, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '{self.address}'}}\n")

    def _argv(self) -> list[str | Path]:
        program = find_program("docker-registry")
        if program is None:
            raise RuntimeError("docker-registry is missing: run hack/install-services.sh")
        return [program, "serve", self.base_dir / "config.yml"]

    def _ready(self) -> bool:
        return http_status(f"http://{self.address}/v2/") == 200


def start_registry(base_dir: Path) -> Registry:
    base_dir.mkdir(parents=True, exist_ok=True)
    return Registry(base_dir=base_dir, log=base_dir / "registry.log", port=free_port()).start()
