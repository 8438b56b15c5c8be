"""paykube's API client on an exec-plugin kubeconfig, against the real API server: the
plugin (tests/plugins/exec_credential.py) mints ServiceAccount tokens bound to Secrets, so
that deleting a Secret revokes its token for real. The client fetches a new token before
the announced expiry, and exactly one after a 401, however many requests were refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import REPO, ControlPlane
from tests.plugins.exec_credential import exec_kubeconfig, runs, wait_refused, write_config
from tests.plugins.kube_fixtures import make_namespace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]
EXAMPLE = REPO / "crds" / "examples" / "paymentsession-simple.yaml"


@dataclass
class ExecAccount:
    """A ServiceAccount that may read PaymentSessions in `namespace`, and a kubeconfig
    whose only credentials come from the exec plugin."""

    kube: ControlPlane
    namespace: str
    name: str
    state: Path
    kubeconfig: Path

    def configure(self, lifetime: float) -> None:
        write_config(self.state, kubectl=self.kube.binaries.kubectl,
                     kubeconfig=self.kube.kubeconfig, namespace=self.namespace,
                     service_account=self.name, lifetime=lifetime)

    def runs(self) -> list[dict[str, Any]]:
        return runs(self.state)

    def revoke(self, run: dict[str, Any]) -> None:
        """Delete the Secret the run's token is bound to; wait until the API server refuses
        the token."""
        self.kube.kubectl("delete", "secret", run["secret"], "-n", self.namespace)
        wait_refused(self.kube.server, self.kube.ca, run["token"])


@pytest.fixture
def account(kube: ControlPlane, tmp_path: Path) -> Iterator[ExecAccount]:
    namespace = make_namespace(kube, "solo-exec")
    name = "paykube-exec"
    kube.kubectl("create", "serviceaccount", name, "-n", namespace)
    kube.kubectl("create", "role", "reader", "-n", namespace, "--verb=get,list,watch",
                 "--resource=paymentsessions.payments.paykube.dev")
    kube.kubectl("create", "rolebinding", "reader", "-n", namespace, "--role=reader",
                 f"--serviceaccount={namespace}:{name}")
    # kubectl waits out the 429s of a just-installed CRD's cache (paykube's client does not).
    kube.kubectl("get", "paymentsessions", "-n", namespace)
    state = tmp_path / "plugin"
    kubeconfig = exec_kubeconfig(tmp_path / "exec.kubeconfig", server=kube.server,
                                 ca=kube.ca, state=state, namespace=namespace)
    yield ExecAccount(kube, namespace, name, state, kubeconfig)
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


async def test_a_plugin_token_is_replaced_before_its_expiry(account: ExecAccount) -> None:
    account.configure(lifetime=12)
    config = KubeConfig.from_file(account.kubeconfig)
    assert config.namespace == account.namespace
    async with KubeClient(config) as client:
        assert await client.list_sessions(account.namespace) == []
        (first,) = account.runs()  # one run: the load's, used by the first request
        # Past the refresh point (a quarter of the lifetime before the expiry), not past
        # the expiry: the next request fetches a new token first.
        await asyncio.sleep(max(0.0, first["expires"] - 2.0 - time.time()))
        assert await client.list_sessions(account.namespace) == []
        second = account.runs()[1]
        assert second["at"] < first["expires"]
        # The first token ends for real: nothing uses it any more.
        account.revoke(first)
        assert await client.list_sessions(account.namespace) == []
        assert len(account.runs()) == 2


async def test_a_revoked_token_is_replaced_once_for_all_refused_requests(
        account: ExecAccount) -> None:
    account.configure(lifetime=3600)
    config = KubeConfig.from_file(account.kubeconfig)
    async with KubeClient(config) as client:
        _, version = await client.list_sessions_at(account.namespace)
        account.revoke(account.runs()[0])
        # Ten requests at once, all refused with the same token: one plugin run.
        results = await asyncio.gather(
            *(client.list_sessions(account.namespace) for _ in range(10)))
        assert results == [[]] * 10
        assert len(account.runs()) == 2

        # A watch opened with a revoked token is opened again with a new one.
        account.revoke(account.runs()[1])
        events = cast(AsyncGenerator[tuple[str, dict[str, Any]], None],
                      client.watch_sessions(account.namespace, version, server_timeout=20))
        first_event = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.5)
        manifest = yaml.safe_load(EXAMPLE.read_text())
        manifest["metadata"] = {"name": "watched", "namespace": account.namespace}
        account.kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        kind, obj = await asyncio.wait_for(first_event, 20)
        await events.aclose()
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "watched")
        assert len(account.runs()) == 3
