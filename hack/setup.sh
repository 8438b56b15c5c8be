#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks, idempotently and fast when warm:
# system packages for the services and the local node, the Python environment, and the
# Go-built binaries (kube-apiserver, kube-controller-manager, kubectl, etcd, stripe-mock, helm;
# kubelet, kube-scheduler, kube-proxy, CoreDNS).
# Everything lands under $PAYKUBE_CACHE (default ~/.cache/paykube), never in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PAYKUBE_CACHE:-$HOME/.cache/paykube}"
VENV="$CACHE/venv"
mkdir -p "$CACHE/logs"

log() { echo "[setup] $*" >&2; }

if [ -x hack/install-services.sh ]; then hack/install-services.sh; fi

source hack/versions.sh

# Python >= 3.11 runs paykube; say so before pip fails on a dependency.
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { log "Python >= 3.11 is required (found $(python3 --version 2>&1))"; exit 1; }

# Go builds the Kubernetes binaries. No download site is reachable, so a missing Go cannot
# be fetched; a Go that is too old but can switch toolchains takes GO_TOOLCHAIN from the
# module proxy (about 76 MB, once per machine).
command -v go >/dev/null || { log "Go >= $GO_MIN is required and not installed; install it first"; exit 1; }
go_have="$(GOTOOLCHAIN=local go env GOVERSION)"; go_have="${go_have#go}"
older() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ] && [ "$1" != "$2" ]; }
if older "$go_have" "$GO_MIN"; then
  if older "$go_have" 1.21; then
    log "Go $go_have is too old (need >= $GO_MIN, or >= 1.21 to fetch $GO_TOOLCHAIN)"; exit 1
  fi
  log "Go $go_have < $GO_MIN: using $GO_TOOLCHAIN from the Go module proxy"
  export PAYKUBE_GOTOOLCHAIN="$GO_TOOLCHAIN"
fi

stamp="$CACHE/venv.stamp"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)-$(python3 --version 2>&1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating the Python environment in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

hack/build-k8s.sh all
hack/build-k8s.sh tools
hack/build-k8s.sh node   # the local node's kubelet, kube-scheduler, kube-proxy, CoreDNS
