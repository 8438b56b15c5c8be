# Pinned versions of everything hack/ builds or installs. Changing one rebuilds only it.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
STRIPE_MOCK_VERSION=v0.203.0
HELM_VERSION=v3.22.0
# The local node (hack/paykube_dev/node): kubelet, kube-scheduler and kube-proxy are built at
# K8S_VERSION; CoreDNS runs as a host process.
COREDNS_VERSION=v1.14.7
# The oldest local Go that builds K8S_VERSION (its go.mod says go 1.26.0); an older Go that
# can switch toolchains (>= 1.21) fetches GO_TOOLCHAIN from the Go module proxy instead.
GO_MIN=1.26
GO_TOOLCHAIN=go1.27.3
