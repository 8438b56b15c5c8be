# Pinned versions of everything hack/ builds or installs. Changing one rebuilds only it.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
STRIPE_MOCK_VERSION=v0.203.0
HELM_VERSION=v3.22.0
