"""Container images made on this machine, without Docker and without a reachable registry.

- the base: Debian bookworm from `debootstrap --variant=minbase` (the Debian mirror apt
  uses), plus python3 and a virtualenv at /usr/local that has pip, so that the repository's
  Dockerfile runs on it unchanged (`PYTHON_IMAGE` build argument) as it does on the
  official Python image;
- the pause image: Debian's static `catatonit -P`, the sandbox every pod starts from;
- paykube's image: `buildah bud` of the repository's Dockerfile.

buildah keeps its storage under $PAYKUBE_CACHE/containers. Each image is rebuilt only when
its cache key changes (see `paykube_cache_key`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.proc import CACHE_DIR

REPO = Path(__file__).resolve().parents[3]
STORAGE = CACHE_DIR / "containers"
RUNC = "/usr/sbin/runc"
BASE_IMAGE = "localhost/paykube-base:bookworm"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PAYKUBE_IMAGE = "docker.io/library/paykube"
# Packages of the local base: Python, venv support (ensurepip's wheels), the CA bundle pip
# needs for PyPI, and what the Dockerfile's final stage runs (groupadd/useradd: passwd).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")


class ImageError(RuntimeError):
    """An image could not be made; the message says which step and why."""


def _run(argv: list[str], *, what: str, log: Path | None = None,
         timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    started = time.monotonic()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{what}: no result after {timeout:.0f}s ({' '.join(argv[:3])} ...)") \
            from exc
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}  # {time.monotonic() - started:.1f}s, "
                      f"exit {result.returncode}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def buildah(*args: str, what: str, log: Path | None = None, timeout: float = 1800) -> str:
    """buildah with its storage in the cache and runc as the runtime (crun refuses cgroups
    in hybrid mode on this kind of machine)."""
    argv = ["buildah", "--root", str(STORAGE / "storage"), "--runroot", str(STORAGE / "run"),
            "--storage-driver", "overlay", *args]
    env = {**os.environ, "BUILDAH_RUNTIME": RUNC, "BUILDAH_ISOLATION": "oci"}
    return _run(argv, what=what, log=log, timeout=timeout, env=env)


def image_id(name: str) -> str | None:
    try:
        out = buildah("images", "--json", name, what=f"look up {name}")
    except ImageError:
        return None
    found = json.loads(out or "[]")
    return str(found[0]["id"]) if found else None


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources" or "URIs:" in text:
            for block in text.split("\n\n"):
                uris = re.search(r"^URIs:\s*(\S+)", block, re.MULTILINE)
                suites = re.search(r"^Suites:\s*(.+)$", block, re.MULTILINE)
                if uris and suites and "bookworm" in suites.group(1).split():
                    return uris.group(1)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "bookworm" in parts:
                return next(p for p in parts[1:] if "://" in p)
    raise ImageError("no Debian bookworm mirror in /etc/apt/sources.list*: debootstrap needs one")


def ensure_base(log: Path) -> str:
    """The local Python base image (made once per machine, about a minute)."""
    stamp = STORAGE / "base.stamp"
    want = "|".join([BASE_IMAGE, *BASE_PACKAGES, "no-python-wheels"])
    existing = image_id(BASE_IMAGE)
    if existing and stamp.exists() and stamp.read_text() == want:
        return existing
    STORAGE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paykube-base-", dir=STORAGE) as temp:
        root = Path(temp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              "bookworm", str(root), apt_mirror()],
             what="debootstrap of the base image", log=log, timeout=900)
        # The official image's layout, as far as the Dockerfile relies on it: `python` and
        # `pip` on the PATH, pip able to uninstall itself. A venv at /usr/local gives both
        # without touching the Debian-managed interpreter.
        _run(["chroot", str(root), "python3", "-m", "venv", "/usr/local"],
             what="the base image's /usr/local virtualenv", log=log)
        # As in the official image after the Dockerfile's clean-up: ensurepip's wheels
        # (Debian keeps them in /usr/share/python-wheels) are not left to install from.
        shutil.rmtree(root / "usr/share/python-wheels", ignore_errors=True)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / cache, ignore_errors=True)
            (root / cache).mkdir(parents=True)
        container = buildah("from", "scratch", what="buildah from scratch", log=log).strip()
        try:
            buildah("copy", container, f"{root}/", "/", what="copy the rootfs", log=log)
            buildah("config", "--env", "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env", "LANG=C.UTF-8", "--cmd", "python3", container,
                    what="configure the base image", log=log)
            buildah("commit", "--rm", container, BASE_IMAGE, what="commit the base image",
                    log=log)
        except BaseException:
            buildah("rm", container, what="remove the working container", log=log)
            raise
        # debootstrap leaves device nodes and root-owned files: rm as root is fine here.
    stamp.write_text(want)
    found = image_id(BASE_IMAGE)
    if found is None:
        raise ImageError(f"{BASE_IMAGE} not found after commit")
    return found


def ensure_pause(log: Path) -> str:
    """The pod sandbox image: catatonit in pause mode, nothing else."""
    existing = image_id(PAUSE_IMAGE)
    if existing:
        return existing
    catatonit = shutil.which("catatonit") or "/usr/bin/catatonit"
    if not Path(catatonit).exists():
        raise ImageError("catatonit is missing: run hack/install-services.sh")
    container = buildah("from", "scratch", what="buildah from scratch", log=log).strip()
    buildah("copy", "--chmod", "0755", container, catatonit, "/pause",
            what="copy catatonit", log=log)
    buildah("config", "--entrypoint", '["/pause", "-P"]', "--user", "65535:65535",
            container, what="configure the pause image", log=log)
    buildah("commit", "--rm", container, PAUSE_IMAGE, what="commit the pause image", log=log)
    found = image_id(PAUSE_IMAGE)
    assert found is not None
    return found


def _hash_tree(digest: hashlib._Hash, path: Path) -> None:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file()
        and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyo"))
        and ".egg-info" not in str(p))
    for file in files:
        digest.update(str(file.relative_to(REPO)).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")


def build_inputs() -> list[str]:
    """What reaches the build context: the allow-list of .dockerignore (`!path` lines)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return sorted(line[1:].strip().rstrip("/") for line in lines if line.startswith("!"))


def paykube_cache_key(base_id: str) -> str:
    """What the image depends on: the Dockerfile, the dependency declarations
    (pyproject.toml: the lock inputs), the sources the build copies, and the base."""
    digest = hashlib.sha256()
    digest.update(base_id.encode() + b"\0")
    for name in ("Dockerfile", ".dockerignore", *build_inputs()):
        if (REPO / name).exists():
            _hash_tree(digest, REPO / name)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    """Full reference in local storage, e.g. docker.io/library/paykube:c0ffee..."""
    repository: str
    tag: str
    image_id: str
    size_bytes: int
    built: bool
    """False when the cache already had it."""
    seconds: float


def ensure_paykube(log: Path) -> BuiltImage:
    """paykube's image from the repository's Dockerfile on the local base; tagged by its
    cache key, so an unchanged tree reuses the image of an earlier run."""
    began = time.monotonic()
    base = ensure_base(log)
    tag = paykube_cache_key(base)
    name = f"{PAYKUBE_IMAGE}:{tag}"
    found = image_id(name)
    built = found is None
    if found is None:
        buildah("bud", "--runtime", RUNC, "--isolation", "oci", "--pull-never",
                # The build stage fetches the wheels from PyPI (a package registry), through
                # this machine's network and with this machine's CA bundle (mounted for the
                # RUN steps only: nothing of it lands in a layer).
                "--network", "host", "--layers=false", *_host_trust(),
                "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-f", str(REPO / "Dockerfile"),
                "-t", name, str(REPO), what="buildah bud of the Dockerfile", log=log)
        found = image_id(name)
        if found is None:
            raise ImageError(f"{name} not found after the build")
        _prune(PAYKUBE_IMAGE, name, log)
    return BuiltImage(name=name, repository=PAYKUBE_IMAGE, tag=tag, image_id=found,
                      size_bytes=_storage_size(name), built=built,
                      seconds=time.monotonic() - began)


def _host_trust() -> list[str]:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return []
    conf = STORAGE / "pip.conf"
    conf.write_text(f"[global]\ncert = {bundle}\n")
    return ["--volume", f"{bundle}:{bundle}:ro", "--volume", f"{conf}:/etc/pip.conf:ro"]


_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def _storage_size(name: str) -> int:
    """Unpacked size in bytes (buildah reports it rounded, e.g. "321 MB")."""
    out = buildah("images", "--json", name, what="image size")
    found = json.loads(out or "[]")
    if not found:
        return 0
    number, _, unit = str(found[0].get("size", "0 B")).partition(" ")
    return int(float(number) * _UNITS.get(unit.upper(), 1))


def _prune(repository: str, keep: str, log: Path) -> None:
    """Other tags of `repository` (images of earlier trees) and dangling images go: each
    holds its own copy of the dependencies' layer."""
    out = buildah("images", "--json", what="list images")
    for image in json.loads(out or "[]"):
        names = image.get("names") or []
        if not names or (all(n.startswith(f"{repository}:") for n in names)
                         and keep not in names):
            buildah("rmi", "--force", image["id"], what=f"remove old image {image['id']}",
                    log=log)


def push(name: str, destination: str, log: Path) -> None:
    """Copy an image from buildah's storage to the local (plain HTTP, loopback) registry."""
    buildah("push", "--tls-verify=false", name, f"docker://{destination}",
            what=f"push {name} to {destination}", log=log, timeout=600)
