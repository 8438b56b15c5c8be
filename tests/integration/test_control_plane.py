"""The local control plane is real: RBAC is enforced and service accounts authenticate."""

from __future__ import annotations

from pathlib import Path

from paykube_dev.kube import ControlPlane


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
