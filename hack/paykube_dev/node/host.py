"""What the local node changes on this machine, recorded so that teardown can undo all of
it and a test can prove it did: links, iptables chains, cgroups, mounts, sysctls, paths.

Everything the node creates carries a fixed name (bridge `paykube0`, cgroup `paykube-node`,
iptables chains `PAYKUBE-*`, and the `KUBE-*`/`CNI-*` chains of kube-proxy, the kubelet and
the CNI plugins), so a teardown after a crash finds it without any state but the sysctl
values saved at start.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "paykube0"
CGROUP = "paykube-node"
GUARD_CHAIN = "PAYKUBE-NODE"
CHAIN_PREFIXES = ("KUBE-", "CNI-", "PAYKUBE-")
# Sysctls of the host's network namespace that the node sets while it runs and restores.
NET_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
# VM-wide values the kubelet insists on (its kernel tunables). They are never written on the
# host: containerd and the kubelet run in a mount namespace where these files are bind
# mounts of regular files that already hold the wanted values.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                   "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                   "kernel/keys/root_maxbytes": "25000000"}
# Watched in the leftover check besides the ones above (kube-proxy could touch them).
WATCHED_SYSCTLS = (*NET_SYSCTLS, *KUBELET_SYSCTLS, "net/ipv4/conf/all/route_localnet",
                   "net/netfilter/nf_conntrack_max", "net/ipv6/conf/all/forwarding",
                   "net/bridge/bridge-nf-call-ip6tables")
# Host paths the runtime would create; inside the node's mount namespace each is covered by
# a private tmpfs, so the host keeps at most the empty directory, which teardown removes.
# (containerd 1.6 puts its shims' sockets and runc's state under /run/containerd whatever
# its configured state directory.)
PRIVATE_DIRS = ("/run/netns", "/run/containerd", "/var/lib/cni", "/var/log/pods",
                "/var/log/containers")
# Paths the packages' defaults would use and the node must never create.
WATCHED_PATHS = (*PRIVATE_DIRS, "/var/lib/kubelet", "/var/lib/containerd", "/opt/containerd",
                 "/etc/cni/net.d", "/opt/cni", "/etc/kubernetes", "/run/kubernetes")
SYS_CGROUP = Path("/sys/fs/cgroup")


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def read_sysctl(name: str) -> str | None:
    try:
        return sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    sysctl_path(name).write_text(value + "\n")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed (exit {result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result


# -- cgroups -------------------------------------------------------------------------------


def hierarchies() -> list[Path]:
    """Mount points of the cgroup hierarchies (v1 controllers and the unified one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]))
    return sorted(set(found))


def make_cgroup(relative: str) -> None:
    """`relative` (e.g. paykube-node/node) in every hierarchy; cpuset needs cpus and mems
    before it admits a task, copied from the parent."""
    for root in hierarchies():
        path = root
        for part in Path(relative).parts:
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (path / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((parent / knob).read_text())


def cgroup_join_command(relative: str) -> str:
    """Shell words that move the calling shell into `relative` in every hierarchy."""
    files = " ".join(shlex.quote(str(root / relative / "cgroup.procs")) for root in hierarchies())
    return f"for f in {files}; do echo $$ > \"$f\"; done"


def cgroup_pids(name: str = CGROUP) -> set[int]:
    pids: set[int] = set()
    for root in hierarchies():
        top = root / name
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_cgroup(name: str = CGROUP, timeout: float = 30.0) -> None:
    """SIGKILL everything in the cgroup tree until it is empty (containers, shims, the
    runtime: whatever forked in there), then remove the tree in every hierarchy."""
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {sorted(pids)} survive in cgroup {name}")
        time.sleep(0.1)
    for root in hierarchies():
        top = root / name
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            _rmdir_cgroup(path, deadline)


def _rmdir_cgroup(path: Path, deadline: float) -> None:
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY until the kernel has reaped the last task
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot remove cgroup {path}: {exc}") from exc
            time.sleep(0.1)


# -- iptables ------------------------------------------------------------------------------


def iptables_rules(family: str = "iptables") -> list[str]:
    """`iptables-save` without counters and comments: one line per chain or rule."""
    result = run(f"{family}-save", check=False)
    lines = []
    table = ""
    for line in result.stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            lines.append(f"{table} {line.rsplit(' ', 1)[0]}")
        elif line.startswith("-A"):
            lines.append(f"{table} {line}")
    return lines


def remove_chains(prefixes: Iterable[str] = CHAIN_PREFIXES) -> None:
    """Every chain whose name starts with one of `prefixes`, and every jump to one, in all
    tables of both families (kube-proxy and the kubelet write IPv6 rules too)."""
    prefixes = tuple(prefixes)
    for family in ("iptables", "ip6tables"):
        ours: dict[str, set[str]] = {}
        jumps: list[tuple[str, list[str]]] = []
        for line in iptables_rules(family):
            table, _, rest = line.partition(" ")
            if rest.startswith(":"):
                chain = rest[1:].split()[0]
                if chain.startswith(prefixes):
                    ours.setdefault(table, set()).add(chain)
            else:
                words = shlex.split(rest)
                chain = words[1]
                target = words[words.index("-j") + 1] if "-j" in words else ""
                if target.startswith(prefixes) and not chain.startswith(prefixes):
                    jumps.append((table, words[1:]))
        for table, spec in jumps:
            run(family, "-w", "5", "-t", table, "-D", *spec, check=False)
        for table, chains in ours.items():
            for chain in chains:
                run(family, "-w", "5", "-t", table, "-F", chain, check=False)
            for chain in chains:
                run(family, "-w", "5", "-t", table, "-X", chain, check=False)


def nft_tables() -> list[str]:
    """The nftables tables, e.g. `table ip mangle` (iptables-nft makes one per table used;
    none exists on a machine that never used iptables)."""
    if not (shutil.which("nft") or Path("/usr/sbin/nft").exists()):
        return []
    return sorted(run("nft", "list", "tables", check=False).stdout.splitlines())


_IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")


def remove_new_tables(known: Iterable[str]) -> None:
    """Drop the nftables tables that the node's iptables use created (not in `known`), once
    no rule is left in them; and kube-proxy's own tables."""
    known = set(known)
    rules = {"ip": iptables_rules("iptables"), "ip6": iptables_rules("ip6tables")}
    for line in nft_tables():
        words = line.split()
        if line in known or len(words) != 3:
            continue
        family, name = words[1], words[2]
        empty = not any(r.startswith(f"{name} -A") for r in rules.get(family, []))
        if name == "kube-proxy" or (name in _IPTABLES_TABLES and family in rules and empty):
            run("nft", "delete", "table", family, name)


def install_guard(bridge: str, chain: str = GUARD_CHAIN) -> None:
    """Pods talk to each other and to this machine, never beyond it: forwarded traffic that
    enters or leaves the bridge from or to any other interface is dropped. In the mangle
    table, which the filter table's rules (kube-proxy's ACCEPTs) come after."""
    run("iptables", "-w", "5", "-t", "mangle", "-N", chain)
    run("iptables", "-w", "5", "-t", "mangle", "-A", chain, "-i", bridge, "-o", bridge,
        "-j", "RETURN")
    run("iptables", "-w", "5", "-t", "mangle", "-A", chain, "-i", bridge, "-j", "DROP")
    run("iptables", "-w", "5", "-t", "mangle", "-A", chain, "-o", bridge, "-j", "DROP")
    run("iptables", "-w", "5", "-t", "mangle", "-I", "FORWARD", "1", "-j", chain)


def guard_drops(chain: str = GUARD_CHAIN) -> int:
    """Packets the guard dropped so far."""
    out = run("iptables", "-w", "5", "-t", "mangle", "-L", chain, "-v", "-x", "-n").stdout
    return sum(int(line.split()[0]) for line in out.splitlines()
               if line.split()[2:3] == ["DROP"])


# -- the whole picture ---------------------------------------------------------------------


def _links() -> list[str]:
    out = run("ip", "-o", "link", "show").stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def _addresses() -> list[str]:
    out = run("ip", "-o", "addr", "show").stdout
    return sorted(" ".join(line.split()[1:4]) for line in out.splitlines())


def _routes() -> list[str]:
    return sorted(run("ip", "route", "show", "table", "all").stdout.splitlines())


def _mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sorted(" ".join(line.split()[3:5]) for line in lines)


def _cgroups() -> list[str]:
    return sorted(str(p) for root in hierarchies() for p in root.iterdir() if p.is_dir())


@dataclass(frozen=True)
class HostState:
    """A snapshot of everything the node may touch on this machine."""

    links: tuple[str, ...]
    addresses: tuple[str, ...]
    routes: tuple[str, ...]
    iptables: tuple[str, ...]
    ip6tables: tuple[str, ...]
    nftables: tuple[str, ...]
    mounts: tuple[str, ...]
    cgroups: tuple[str, ...]
    sysctls: tuple[str, ...]
    paths: tuple[str, ...]
    processes: tuple[str, ...]

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            links=tuple(_links()), addresses=tuple(_addresses()), routes=tuple(_routes()),
            iptables=tuple(iptables_rules("iptables")),
            ip6tables=tuple(iptables_rules("ip6tables")), nftables=tuple(nft_tables()),
            mounts=tuple(_mounts()), cgroups=tuple(_cgroups()),
            sysctls=tuple(f"{n}={read_sysctl(n)}" for n in WATCHED_SYSCTLS),
            paths=tuple(p for p in WATCHED_PATHS if os.path.lexists(p)),
            processes=tuple(sorted(str(p) for p in cgroup_pids())),
        )

    def differences(self, later: HostState) -> list[str]:
        """What `later` has or lacks compared to this snapshot, one line each."""
        found = []
        for name in self.__dataclass_fields__:
            before, after = set(getattr(self, name)), set(getattr(later, name))
            found += [f"{name}: left behind {item}" for item in sorted(after - before)]
            found += [f"{name}: gone {item}" for item in sorted(before - after)]
        return found
