"""The local control plane is real: RBAC is enforced and service accounts authenticate."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from paykube_dev.kube import ControlPlane


def test_etcd_admits_only_tls_clients_with_a_cert_of_the_cluster_ca(kube: ControlPlane) -> None:
    url = f"https://127.0.0.1:{kube.etcd_port}/health"
    anonymous = ssl.create_default_context(cafile=str(kube.ca))
    # The handshake fails (etcd requires a client cert); plain HTTP gets no answer either.
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        urllib.request.urlopen(url, context=anonymous, timeout=5)
    with pytest.raises((urllib.error.URLError, ConnectionResetError)):
        urllib.request.urlopen(f"http://127.0.0.1:{kube.etcd_port}/health", timeout=5)
    apiserver = ssl.create_default_context(cafile=str(kube.ca))
    apiserver.load_cert_chain(str(kube.etcd_client.cert), str(kube.etcd_client.key))
    with urllib.request.urlopen(url, context=apiserver, timeout=5) as response:
        assert response.status == 200


def test_service_account_without_rights_is_denied(kube: ControlPlane, namespace: str,
                                                  tmp_path: Path) -> None:
    kube.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    config = kube.service_account_kubeconfig(namespace, "nobody", tmp_path / "nobody.json")
    denied = kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in denied.stderr


def test_granted_role_allows_exactly_what_it_says(kube: ControlPlane, namespace: str,
                                                  tmp_path: Path) -> None:
    kube.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kube.kubectl("create", "role", "read-cm", "--verb=get,list", "--resource=configmaps",
                 "-n", namespace)
    kube.kubectl("create", "rolebinding", "read-cm", "--role=read-cm",
                 f"--serviceaccount={namespace}:reader", "-n", namespace)
    config = kube.service_account_kubeconfig(namespace, "reader", tmp_path / "reader.json")
    assert kube.kubectl("get", "configmaps", "-n", namespace, kubeconfig=config).returncode == 0
    write = kube.kubectl("create", "configmap", "x", "-n", namespace, kubeconfig=config,
                         check=False)
    assert "forbidden" in write.stderr


def test_namespace_deletion_completes(kube: ControlPlane) -> None:
    kube.kubectl("create", "namespace", "short-lived")
    kube.kubectl("create", "configmap", "c", "-n", "short-lived")
    kube.kubectl("delete", "namespace", "short-lived", "--timeout=60s")
    gone = kube.kubectl("get", "namespace", "short-lived", check=False)
    assert "NotFound" in gone.stderr
