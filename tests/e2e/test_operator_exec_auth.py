"""The operator program on kubeconfigs as real clusters hand them out.

An exec credential plugin (as EKS's `aws eks get-token`): tests/plugins/exec_credential.py
mints a ServiceAccount token bound to a Secret per run, so that a token can be revoked for
real: at its announced expiry (then no request may carry it past that moment), or at once
(then the operator must fetch a new one after the 401). kopf and paykube's client share
one source, so one plugin run serves both.

Inline client keys (`client-key-data`): no file holding the key outlives the process,
not even a SIGKILLed one.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paykube_dev.kube import ControlPlane
from tests.plugins.exec_credential import exec_kubeconfig, runs, wait_refused, write_config
from tests.plugins.kube_fixtures import make_namespace
from tests.plugins.paykube_fixtures import Stack, solo_operator_as


class Plugin:
    """The plugin's state, and the Secrets its tokens are bound to."""

    def __init__(self, kube: ControlPlane, namespace: str, account: str, state: Path) -> None:
        self.kube, self.namespace, self.account, self.state = kube, namespace, account, state
        self.revoked: set[str] = set()

    def configure(self, lifetime: float) -> None:
        write_config(self.state, kubectl=self.kube.binaries.kubectl,
                     kubeconfig=self.kube.kubeconfig, namespace=self.namespace,
                     service_account=self.account, lifetime=lifetime)

    def runs(self) -> list[dict[str, Any]]:
        return runs(self.state)

    def revoke(self, run: dict[str, Any]) -> None:
        self.kube.kubectl("delete", "secret", run["secret"], "-n", self.namespace)
        self.revoked.add(run["secret"])

    def revoke_expired(self) -> None:
        """Make each announced expiry real."""
        for run in self.runs():
            if run["expires"] <= time.time() and run["secret"] not in self.revoked:
                self.revoke(run)


@pytest.fixture
def plugin(stack: Stack, tmp_path: Path) -> Iterator[tuple[Plugin, Path]]:
    """A ServiceAccount with the rights of a cluster-wide operator (the test is about
    authentication: RBAC has tests of its own) and an exec-plugin kubeconfig for it."""
    kube = stack.kube
    namespace = make_namespace(kube, "solo-exec")
    account = "paykube-operator"
    binding = f"paykube-exec-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "serviceaccount", account, "-n", namespace)
    kube.kubectl("create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
                 f"--serviceaccount={namespace}:{account}")
    state = tmp_path / "plugin"
    kubeconfig = exec_kubeconfig(tmp_path / "exec.kubeconfig", server=kube.server,
                                 ca=kube.ca, state=state, namespace=namespace)
    try:
        yield Plugin(kube, namespace, account, state), kubeconfig
    finally:
        kube.kubectl("delete", "clusterrolebinding", binding, check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def readyz(port: int | None) -> int:
    assert port is not None
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code


def test_the_operator_refreshes_plugin_tokens_before_they_expire(
        stack: Stack, plugin: tuple[Plugin, Path], tmp_path: Path) -> None:
    source, kubeconfig = plugin
    source.configure(lifetime=15)  # refreshed about 4 s ahead
    with solo_operator_as(stack, tmp_path, kubeconfig) as solo:
        for n in range(3):
            stack.apply(solo.namespace, f"order-{n}")
            stack.wait_phase(solo.namespace, f"order-{n}", "Open")
            # /readyz asks the API server: requests all along, as a busy operator makes.
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                assert readyz(solo.operator.metrics_port) == 200
                source.revoke_expired()
                time.sleep(0.5)
        log = solo.operator.log.read_text()
    made = source.runs()
    assert len(made) >= 3, made
    for earlier, later in itertools.pairwise(made):
        assert later["at"] < earlier["expires"], (earlier, later)
    assert source.revoked  # expiries did pass, and nothing used an expired token:
    assert "HTTP 401" not in log
    assert not any(run["token"] in log for run in made)


def test_the_operator_recovers_from_a_revoked_token(
        stack: Stack, plugin: tuple[Plugin, Path], tmp_path: Path) -> None:
    source, kubeconfig = plugin
    source.configure(lifetime=3600)
    with solo_operator_as(stack, tmp_path, kubeconfig) as solo:
        stack.apply(solo.namespace, "before")
        stack.wait_phase(solo.namespace, "before", "Open")
        (first,) = source.runs()  # kopf's login and paykube's client share it

        source.revoke(first)
        wait_refused(stack.kube.server, stack.kube.ca, first["token"])
        stack.apply(solo.namespace, "after")
        stack.wait_phase(solo.namespace, "after", "Open")
        assert readyz(solo.operator.metrics_port) == 200
        log = solo.operator.log.read_text()
    # One new token after the 401, whoever (kopf or paykube's client) met it first.
    assert len(source.runs()) == 2
    assert "401" in log or "Re-authentication" in log


def test_no_client_key_file_outlives_the_operator(stack: Stack, tmp_path: Path) -> None:
    kube = stack.kube
    admin = json.loads(kube.kubeconfig.read_text())
    user = admin["users"][0]["user"]
    key = Path(user["client-key"]).read_bytes()
    inline = dict(admin, users=[{"name": admin["users"][0]["name"], "user": {
        "client-certificate-data": base64.b64encode(
            Path(user["client-certificate"]).read_bytes()).decode(),
        "client-key-data": base64.b64encode(key).decode()}}])
    kubeconfig = tmp_path / "inline.kubeconfig"
    kubeconfig.write_text(json.dumps(inline))
    kubeconfig.chmod(0o600)
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    def holding_the_key() -> list[Path]:
        return [p for p in scratch.rglob("*") if p.is_file() and key in p.read_bytes()]

    with solo_operator_as(stack, tmp_path, kubeconfig, TMPDIR=str(scratch)) as solo:
        stack.apply(solo.namespace, "inline")
        stack.wait_phase(solo.namespace, "inline", "Open")  # the key did authenticate
        assert holding_the_key() == []  # not even while it runs
        solo.operator.stop()  # a clean stop: the loader's private directory goes too
        assert list(scratch.iterdir()) == []
        solo.restart_operator()
        solo.operator.kill()  # SIGKILL: no exit handler runs
        assert holding_the_key() == []
