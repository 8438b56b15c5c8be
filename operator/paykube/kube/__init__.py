"""A small typed Kubernetes API client (aiohttp) for PaymentSession status and Events."""

from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig

__all__ = ["KubeClient", "KubeConfig"]
