#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes) and etcd
# (go.etcd.io/etcd/server/v3) from the Go module proxy at pinned versions; `node` builds the
# local node's kubelet, kube-scheduler, kube-proxy and CoreDNS the same way.
#
# k8s.io/kubernetes replaces its staging modules with ./staging/... paths, which do not
# exist in the module zip; a wrapper module re-points each of them at its published v0
# release, generated from the go.mod that the proxy serves for the pinned version.
# Results are cached under $PAYKUBE_CACHE/bin/<component>-<version>; a stamp file makes
# a second run a no-op.
set -euo pipefail

source "$(dirname "$0")/versions.sh"
CACHE="${PAYKUBE_CACHE:-$HOME/.cache/paykube}"
export GOFLAGS="${GOFLAGS:--trimpath}"
# setup.sh may choose a toolchain from the module proxy when the local Go is too old.
export GOTOOLCHAIN="${PAYKUBE_GOTOOLCHAIN:-local}"
GOPROXY_FIRST="$(go env GOPROXY)"; PROXY="${GOPROXY_FIRST%%,*}"
[ -n "$PROXY" ] && [ "$PROXY" != "direct" ] || PROXY=https://proxy.golang.org

log() { echo "[build-k8s] $*" >&2; }

# build_kubernetes NAME CMD...: the wrapper module in $CACHE/build/NAME-$K8S_VERSION, the
# commands into $CACHE/bin/NAME-$K8S_VERSION. The node's commands (kubelet, kube-scheduler,
# kube-proxy) get a directory of their own, so adding them never rebuilds the control plane.
build_kubernetes() {
  local name=$1; shift
  local out="$CACHE/bin/$name-$K8S_VERSION"
  if [ -f "$out/.done" ]; then log "$name $K8S_VERSION cached in $out"; return; fi
  local work="$CACHE/build/$name-$K8S_VERSION"
  mkdir -p "$work" "$out"
  local staging_version="v0.${K8S_VERSION#v1.}"
  log "generating wrapper module for k8s.io/kubernetes $K8S_VERSION (staging $staging_version)"
  curl -fsSL "$PROXY/k8s.io/kubernetes/@v/$K8S_VERSION.mod" -o "$work/upstream.mod"
  {
    echo "module paykube.dev/hack/kubernetes-wrapper"
    echo
    echo "go $(awk '/^go /{print $2; exit}' "$work/upstream.mod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s.io/[^ ]+ => \./staging/' "$work/upstream.mod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  local cmd
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n'
  } > "$work/tools.go"
  cd "$work"
  log "resolving modules (go mod tidy)"
  go mod tidy >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log"; exit 1; }
  local ldflags="-s -w"
  local vpkg
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1"
    ldflags="$ldflags -X $vpkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $vpkg.gitTreeState=clean"
  done
  for cmd in "$@"; do
    log "building $cmd (this is the slow part on a cold cache)"
    go build -tags tools -ldflags "$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
  touch "$out/.done"
}

build_etcd() {
  local out="$CACHE/bin/etcd-$ETCD_VERSION"
  if [ -f "$out/.done" ]; then log "etcd $ETCD_VERSION cached in $out"; return; fi
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  mkdir -p "$work" "$out"
  cat > "$work/go.mod" <<MOD
module paykube.dev/hack/etcd-wrapper

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > "$work/main.go" <<'GO'
// Command etcd runs the etcd server from the published server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cd "$work"
  go mod tidy >/dev/null
  log "building etcd $ETCD_VERSION"
  go build -ldflags "-s -w" -o "$out/etcd" .
  touch "$out/.done"
}

build_go_tool() { # name module version binary
  local name=$1 module=$2 version=$3
  local out="$CACHE/bin/$name-$version"
  if [ -f "$out/.done" ]; then log "$name $version cached"; return; fi
  mkdir -p "$out"
  log "installing $module@$version"
  GOBIN="$out" go install -ldflags "-s -w" "$module@$version"
  touch "$out/.done"
}

CONTROL_PLANE=(kube-apiserver kube-controller-manager kubectl)
NODE=(kubelet kube-scheduler kube-proxy)
what="${1:-all}"
case "$what" in
  kubernetes) build_kubernetes kubernetes "${CONTROL_PLANE[@]}" ;;
  node)
    build_kubernetes kubernetes-node "${NODE[@]}"
    build_go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION"
    ;;
  etcd) build_etcd ;;
  tools)
    build_go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"
    build_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
    ;;
  all)
    build_etcd
    build_go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"
    build_kubernetes kubernetes "${CONTROL_PLANE[@]}"
    ;;
  *) echo "usage: $0 [all|kubernetes|node|etcd|tools]" >&2; exit 2 ;;
esac
