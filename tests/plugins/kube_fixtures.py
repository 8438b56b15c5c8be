"""Fixtures for the real local control plane (etcd + kube-apiserver + controller-manager)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import REPO, ControlPlane

CRD = REPO / "crds" / "paymentsession.yaml"
PROVIDER_CRDS = (REPO / "crds" / "paymentprovider.yaml",
                 REPO / "crds" / "clusterpaymentprovider.yaml")
REFUND_CRD = REPO / "crds" / "paymentrefund.yaml"


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.started(tmp_path_factory.mktemp("kube")) as plane:
        yield plane


@pytest.fixture(scope="session")
def crd_installed(kube: ControlPlane) -> Path:
    """All of paykube's CRDs (PaymentSession, PaymentRefund and the provider accounts);
    returns the PaymentSession CRD's path."""
    for path in (*PROVIDER_CRDS, REFUND_CRD):
        kube.install_crd(path)
    return kube.install_crd(CRD)


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The API server (or helm) refused, saying each of `fragments`."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"expected a refusal, got success:\n{output}"
    for fragment in fragments:
        assert fragment in output, f"expected {fragment!r} in:\n{output}"


def create_secret(kube: ControlPlane, namespace: str, name: str, data: dict[str, str]) -> None:
    kube.kubectl("create", "secret", "generic", name, "-n", namespace,
                 *[f"--from-literal={k}={v}" for k, v in data.items()])


def make_namespace(kube: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace that the shared test operator (`stack`) reconciles (`t-*`)."""
    name = make_namespace(kube, "t")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def unmanaged_namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace no shared operator touches (`solo-*`)."""
    name = make_namespace(kube, "solo")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def kube_client(kube: ControlPlane) -> AsyncIterator[KubeClient]:
    async with KubeClient(KubeConfig.from_file(kube.kubeconfig)) as client:
        yield client
