"""A real single-node Kubernetes on this machine, for the image and chart tests and for
trying the chart by hand: `python -m paykube_dev.node` (see docs/node.md).

- `cluster.LocalCluster`: control plane + kubelet/containerd/CNI/kube-proxy/CoreDNS/registry,
  started and stopped in one call, leaving nothing behind;
- `images`: the base, pause and paykube images, built locally with buildah;
- `host`: what the node changes on the machine, and the snapshot that proves teardown.
"""
