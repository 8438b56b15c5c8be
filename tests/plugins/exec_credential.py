"""A kubeconfig exec credential plugin for tests, as `aws eks get-token` is one: each run
mints a new ServiceAccount token and prints it as an ExecCredential.

    python exec_credential.py STATE_DIR

STATE_DIR/config.json says which ServiceAccount, through which kubectl and admin
kubeconfig, and the `lifetime` (seconds) to announce as `expirationTimestamp`: the API
server gives no token under 10 minutes, so each token is bound to a Secret of its own
(`<serviceAccount>-tok-<n>`), which the test deletes to revoke it (at its announced expiry,
or at once to provoke a 401). Each run appends one JSON line to STATE_DIR/runs.jsonl
(`n`, `at`, `expires`, `secret`, `token`): the tests count runs and check their times.
Standard library only: it runs under whatever Python the program under test has.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

API_VERSION = "client.authentication.k8s.io/v1"


def write_config(state: Path, *, kubectl: Path, kubeconfig: Path, namespace: str,
                 service_account: str, lifetime: float) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "config.json").write_text(json.dumps({
        "kubectl": str(kubectl), "kubeconfig": str(kubeconfig), "namespace": namespace,
        "serviceAccount": service_account, "lifetime": lifetime}))


def runs(state: Path) -> list[dict[str, Any]]:
    path = state / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_refused(server: str, ca: Path, token: str, timeout: float = 30.0) -> None:
    """Until the API server answers 401 to `token` (it caches a token's review ~10 s)."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{server}/api",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=5):
                pass
        except urllib.error.HTTPError as refused:
            if refused.code == 401:
                return
        time.sleep(0.2)
    raise AssertionError(f"the API server still accepts the revoked token after {timeout}s")


def exec_kubeconfig(path: Path, *, server: str, ca: Path, state: Path,
                    namespace: str) -> Path:
    """A kubeconfig whose only credentials come from this plugin."""
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "paykube-local",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "exec", "user": {"exec": {
            "apiVersion": API_VERSION, "command": sys.executable,
            "args": [str(Path(__file__).resolve()), str(state)],
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": "exec", "context": {"cluster": "paykube-local", "user": "exec",
                                                   "namespace": namespace}}],
        "current-context": "exec",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def _kubectl(config: dict[str, Any], *args: str) -> str:
    result = subprocess.run(
        [config["kubectl"], f"--kubeconfig={config['kubeconfig']}", "-n", config["namespace"],
         *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(1)
    return result.stdout.strip()


def main(state: Path) -> int:
    started = dt.datetime.now(dt.UTC)  # when the program asked: `at` in runs.jsonl
    config = json.loads((state / "config.json").read_text())
    n = len(runs(state)) + 1
    account = config["serviceAccount"]
    secret = f"{account}-tok-{n}"
    _kubectl(config, "create", "secret", "generic", secret)
    token = _kubectl(config, "create", "token", account, "--duration=10m",
                     "--bound-object-kind=Secret", f"--bound-object-name={secret}")
    # Whole seconds, as real plugins announce it.
    expires = (started + dt.timedelta(seconds=float(config["lifetime"]))).replace(microsecond=0)
    with (state / "runs.jsonl").open("a") as out:
        out.write(json.dumps({"n": n, "at": started.timestamp(), "expires": expires.timestamp(),
                              "secret": secret, "token": token}) + "\n")
    print(json.dumps({"apiVersion": API_VERSION, "kind": "ExecCredential",
                      "status": {"token": token,
                                 "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
