"""Run the local node until Ctrl-C, with paykube's image in its registry; or only clean up
what a killed run left (`--teardown`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from paykube_dev.node import images
from paykube_dev.node.cluster import LocalCluster, teardown_host
from paykube_dev.proc import CACHE_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=CACHE_DIR / "run" / "node")
    parser.add_argument("--teardown", action="store_true",
                        help="remove what an earlier node left on this machine, and exit")
    args = parser.parse_args(argv)
    if args.teardown:
        failed = teardown_host()
        print("\n".join(failed) or "nothing left behind")
        return 1 if failed else 0
    began = time.monotonic()
    built = images.ensure_paykube(args.dir.parent / "images.log")
    print(f"image {built.name}: {built.size_bytes / 1e6:.0f} MB "
          f"({'built' if built.built else 'cached'}, {built.seconds:.0f}s)")
    with LocalCluster.started(args.dir) as cluster:
        reference = cluster.push_image(built)
        print(f"node ready in {time.monotonic() - began:.0f}s; image {reference}")
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
