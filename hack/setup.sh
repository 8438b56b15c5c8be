#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks, idempotently and fast when warm:
# system packages for the services, the Python environment, and the Go-built binaries
# (kube-apiserver, kube-controller-manager, kubectl, etcd, stripe-mock, helm).
# Everything lands under $PAYKUBE_CACHE (default ~/.cache/paykube), never in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PAYKUBE_CACHE:-$HOME/.cache/paykube}"
VENV="$CACHE/venv"
mkdir -p "$CACHE/logs"

log() { echo "[setup] $*" >&2; }

if [ -x hack/install-services.sh ]; then hack/install-services.sh; fi

command -v go >/dev/null || { log "Go is required (https://go.dev/dl); install it first"; exit 1; }

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
