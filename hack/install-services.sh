#!/usr/bin/env bash
# Install the system packages behind the local test services (hack/paykube_dev/services):
# ActiveMQ (Debian `activemq`), MariaDB (`mariadb-server`, `mariadb-client`) and a Java
# runtime, on Debian or Ubuntu. Only what is missing is installed; when everything is there
# (the usual case) this returns at once without touching apt.
#
# The packages' own system services are never used: tests run private instances on free
# loopback ports with their own data directories. So during installation a policy-rc.d
# forbids starting any service, and afterwards, on a machine run by systemd, the MariaDB
# unit is disabled. (A system MariaDB or ActiveMQ that already runs does not get in the
# way either: it has its own port, socket and data directory.)
#
# Runs as root, or through sudo when that is available.
set -euo pipefail

log() { echo "[install-services] $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
[ -f /usr/share/activemq/bin/activemq.jar ] || missing+=(activemq)
{ have mariadbd || have mysqld; } && { have mariadb-install-db || have mysql_install_db; } \
  || missing+=(mariadb-server)
have mariadb || have mysql || missing+=(mariadb-client)
java_ok=false
if have java; then
  # ActiveMQ 5.17 needs Java 11 or newer.
  java_major="$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')"
  [ "${java_major:-0}" -ge 11 ] 2>/dev/null && java_ok=true
fi
$java_ok || missing+=(default-jre-headless)
# build-k8s.sh fetches go.mod files with curl; Debian's python3 needs python3-venv for venvs.
have curl || missing+=(curl)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# The dashboard's browser tests: headless Chromium and its WebDriver (Debian's builds, so
# nothing is downloaded at test time); npm fetches axe-core once into the cache.
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
have npm || missing+=(npm)
# bench/webhook_bench.py drives the webhook with a compiled load generator.
have wrk || missing+=(wrk)
# The local node (hack/paykube_dev/node): image build, containerd + CNI, kube-proxy's
# iptables, the loopback registry, the pause image's init. See docs/node.md.
for pkg in buildah:buildah runc:runc skopeo:skopeo debootstrap:debootstrap \
    containerd:containerd iptables:iptables conntrack:conntrack \
    docker-registry:docker-registry catatonit:catatonit nft:nftables; do
  have "${pkg%%:*}" || missing+=("${pkg#*:}")
done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] \
  || missing+=(containernetworking-plugins)

if [ "${#missing[@]}" -eq 0 ]; then
  log "ActiveMQ, MariaDB, Java, curl, venv support, wrk and the node's packages already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "missing ${missing[*]}, and this is not a Debian-like system (no apt-get); install them by hand"
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  log "missing ${missing[*]}; run this script as root (no sudo here)"
  exit 1
fi

# No service may start while we install (the Docker convention; kept if already present).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# installed by paykube hack/install-services.sh for the duration of apt-get\nexit 101\n' \
    | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"

# The packages enable their units for the next boot; we never want them.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for unit in mariadb.service activemq.service containerd.service docker-registry.service; do
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      log "disabling system unit $unit (paykube runs private instances)"
      "${as_root[@]}" systemctl disable --quiet "$unit" || true
    fi
  done
fi

log "done"
