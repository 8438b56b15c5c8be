"""Reading kubeconfigs and in-cluster service accounts through the `kubernetes` package's
loader, and when credentials are fetched again (`KubeAuth`). No API server here: these are
the loader's results and the refresh rules; tests/integration/test_kube_auth.py and
tests/e2e/test_operator_exec_auth.py use them against the real one."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from paykube.kube import config as config_module
from paykube.kube.config import (
    REFRESH_MARGIN,
    TOKEN_FILE_TTL,
    Credentials,
    KubeAuth,
    KubeConfig,
    KubeConfigError,
    load_cert_chain,
)
from paykube.operator.login import MIN_LIFETIME, KopfLogin, expiration
from paykube_dev.kube import REPO
from paykube_dev.pki import Pki

SERVER = "https://127.0.0.1:6443"


def kubeconfig(path: Path, user: dict[str, Any], *, cluster: dict[str, Any] | None = None,
               namespace: str | None = None) -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster or {"server": SERVER}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": context}]}))
    return path


def plugin(tmp_path: Path, body: str) -> dict[str, Any]:
    """An exec section running a Python snippet; it counts its runs in `runs`."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import datetime as dt, json, pathlib, sys\n"
        f"runs = pathlib.Path({str(tmp_path / 'runs')!r})\n"
        "runs.write_text(runs.read_text() + 'x' if runs.exists() else 'x')\n"
        "n = len(runs.read_text())\n" + body)
    return {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(script)], "interactiveMode": "Never"}


def credential(token: str, expires_in: float | None) -> str:
    status: dict[str, Any] = {"token": token}
    if expires_in is not None:
        status["expirationTimestamp"] = (
            f"(dt.datetime.now(dt.UTC) + dt.timedelta(seconds={expires_in}))"
            ".strftime('%Y-%m-%dT%H:%M:%SZ')")
    fields = ", ".join(f"{k!r}: {v if k == 'expirationTimestamp' else repr(v)}"
                       for k, v in status.items())
    return ("print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
            f"'kind': 'ExecCredential', 'status': {{{fields}}}}}))\n")


def test_a_static_token_user_in_a_context_namespace(tmp_path: Path) -> None:
    ca = Pki.create(tmp_path / "pki").ca.cert.read_bytes()
    config = KubeConfig.from_file(kubeconfig(
        tmp_path / "kc", {"token": "abc.def"}, namespace="team-a",
        cluster={"server": SERVER,
                 "certificate-authority-data": base64.b64encode(ca).decode()}))
    assert (config.server, config.namespace, config.insecure) == (SERVER, "team-a", False)
    assert config.ca_data == ca
    credentials = config.auth.current()
    assert credentials.authorization == "Bearer abc.def"
    assert credentials.refresh_at is None  # a static token is only re-read after a 401
    assert "abc.def" not in repr(config) + repr(credentials)
    assert isinstance(config.ssl_context(credentials), ssl.SSLContext)


def test_a_token_file_is_read_again_once_a_minute_or_after_a_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    config = KubeConfig.from_file(kubeconfig(
        tmp_path / "kc", {"tokenFile": str(token_file)},
        cluster={"server": SERVER, "insecure-skip-tls-verify": True}))
    first = config.auth.current()
    assert first.authorization == "Bearer first" and config.insecure
    assert first.refresh_at is not None
    left = first.refresh_at - dt.datetime.now(dt.UTC)
    assert TOKEN_FILE_TTL - dt.timedelta(seconds=5) < left <= TOKEN_FILE_TTL
    token_file.write_text("rotated")
    assert config.auth.current() is first  # not due: no read
    assert config.auth.renew(first).authorization == "Bearer rotated"


def test_an_exec_plugin_token_is_refreshed_before_its_expiry(tmp_path: Path) -> None:
    config = KubeConfig.from_file(kubeconfig(
        tmp_path / "kc", {"exec": plugin(tmp_path, credential("tok-{n}", 40))}))
    credentials = config.auth.current()
    assert credentials.authorization == "Bearer tok-{n}"
    assert config.auth.fetches == 1 and (tmp_path / "runs").read_text() == "x"
    # A quarter of the lifetime before the expiry (at most REFRESH_MARGIN): 30 s from now.
    assert credentials.refresh_at is not None
    left = (credentials.refresh_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 26 <= left <= 30.5
    assert config.auth.fresh() is credentials
    # A 401 on these: the plugin runs again; a second caller refused the same old token
    # meanwhile gets the new one without another run.
    renewed = config.auth.renew(credentials)
    assert renewed is not credentials and config.auth.renew(credentials) is renewed
    assert (tmp_path / "runs").read_text() == "xx"


def test_a_long_lived_plugin_token_is_refreshed_five_minutes_ahead(tmp_path: Path) -> None:
    config = KubeConfig.from_file(kubeconfig(
        tmp_path / "kc", {"exec": plugin(tmp_path, credential("t", 3600))}))
    refresh_at = config.auth.current().refresh_at
    assert refresh_at is not None
    left = refresh_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=54) < left <= dt.timedelta(hours=1) - REFRESH_MARGIN


def test_a_failing_plugin_stops_the_load_with_its_command_named(tmp_path: Path) -> None:
    section = plugin(tmp_path, "sys.stderr.write('no AWS credentials'); sys.exit(3)\n")
    with pytest.raises(KubeConfigError) as failed:
        KubeConfig.from_file(kubeconfig(tmp_path / "kc", {"exec": section}))
    assert sys.executable in failed.value.message and failed.value.retryable


def test_a_plugin_that_fails_later_raises_a_retryable_error(tmp_path: Path) -> None:
    body = "sys.exit(1) if n > 1 else None\n" + credential("t", 3600)
    config = KubeConfig.from_file(kubeconfig(tmp_path / "kc", {"exec": plugin(tmp_path, body)}))
    with pytest.raises(KubeConfigError) as failed:
        config.auth.renew(config.auth.current())
    assert failed.value.retryable


def test_inline_client_keys_never_stay_in_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 ) -> None:
    pki = Pki.create(tmp_path / "pki")
    client = pki.issue("client", "someone")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    private_tmpdir(monkeypatch, scratch)
    key = client.key.read_bytes()
    config = KubeConfig.from_file(kubeconfig(tmp_path / "kc", {
        "client-certificate-data": base64.b64encode(client.cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key).decode()}, cluster={
        "server": SERVER,
        "certificate-authority-data": base64.b64encode(pki.ca.cert.read_bytes()).decode()}))
    credentials = config.auth.current()
    assert credentials.client_key == key and credentials.authorization is None
    config.ssl_context(credentials)
    assert files_holding(scratch, key) == []
    # At most the loader's private directory, empty (and removed at exit).
    assert all(p.is_dir() for p in scratch.rglob("*"))
    assert list(config_module._SCRATCH[0].iterdir()) == []


def private_tmpdir(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again


def files_holding(directory: Path, secret: bytes) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_load_cert_chain_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki.create(tmp_path / "pki")
    client = pki.issue("client", "someone")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    private_tmpdir(monkeypatch, scratch)
    load_cert_chain(ssl.create_default_context(), client.cert.read_bytes(),
                    client.key.read_bytes())
    assert list(scratch.iterdir()) == []


def test_an_oidc_id_token_is_refreshed_before_its_exp(tmp_path: Path) -> None:
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    id_token = f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"
    config = KubeConfig.from_file(kubeconfig(tmp_path / "kc", {"auth-provider": {
        "name": "oidc", "config": {"id-token": id_token, "client-id": "paykube",
                                   "idp-issuer-url": "https://idp.invalid"}}}))
    credentials = config.auth.current()
    assert credentials.authorization == f"Bearer {id_token}"
    assert credentials.refresh_at == dt.datetime.fromtimestamp(exp, dt.UTC) - REFRESH_MARGIN


def test_kubeconfig_lists_are_merged_as_kubectl_merges_them(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "from-a"})
    second = tmp_path / "b"
    second.write_text(json.dumps({"apiVersion": "v1", "kind": "Config",
                                  "users": [{"name": "u", "user": {"token": "from-b"}}]}))
    config = KubeConfig.load(f"{second}{os.pathsep}{first}")
    assert config.auth.current().authorization == "Bearer from-b"  # the first file wins


def test_in_cluster_service_account(tmp_path: Path) -> None:
    ca = Pki.create(tmp_path / "pki").ca.cert.read_bytes()
    root = tmp_path / "sa"
    root.mkdir()
    (root / "token").write_text("projected\n")
    (root / "ca.crt").write_bytes(ca)
    (root / "namespace").write_text("paykube-system")
    config = KubeConfig.in_cluster(root, {"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                                          "KUBERNETES_SERVICE_PORT": "443"})
    assert (config.server, config.namespace, config.ca_data) == (
        "https://10.96.0.1:443", "paykube-system", ca)
    credentials = config.auth.current()
    assert credentials.authorization == "Bearer projected"
    assert credentials.refresh_at is not None  # the kubelet rotates it: read again


def test_in_cluster_without_the_service_host_says_so(tmp_path: Path) -> None:
    root = tmp_path / "sa"
    root.mkdir()
    (root / "token").write_text("t")
    (root / "ca.crt").write_text("x")
    with pytest.raises(KubeConfigError, match="host"):
        KubeConfig.in_cluster(root, {})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_kube_auth_fetches_when_due_but_not_twice_within_a_second() -> None:
    fetched: list[Credentials] = []
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    def fetch() -> Credentials:
        fetched.append(Credentials(authorization=f"Bearer {len(fetched)}", refresh_at=past))
        return fetched[-1]

    clock = Clock()
    auth = KubeAuth(fetch, clock=clock)
    first = auth.current()
    assert auth.fresh() is None  # due at once (a plugin handing out expired tokens)
    assert auth.current() is first  # ... but not fetched again within a second
    clock.now = 1.5
    assert auth.current() is not first and len(fetched) == 2


def jwt(expires_in: float) -> str:
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)).timestamp())
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"


def test_a_projected_token_is_read_every_minute_but_kopf_renews_it_before_its_exp(
        tmp_path: Path) -> None:
    root = tmp_path / "sa"
    root.mkdir()
    (root / "token").write_text(jwt(3600))
    (root / "ca.crt").write_bytes(Pki.create(tmp_path / "pki").ca.cert.read_bytes())
    config = KubeConfig.in_cluster(root, {"KUBERNETES_SERVICE_HOST": "fd00::1",
                                          "KUBERNETES_SERVICE_PORT": "443"})
    assert config.server == "https://[fd00::1]:443"
    credentials = config.auth.current()
    now = dt.datetime.now(dt.UTC)
    assert credentials.refresh_at is not None and credentials.renew_before is not None
    assert credentials.refresh_at - now <= TOKEN_FILE_TTL  # the file: once a minute
    # kopf: once an hour, before the token's end (not a login every minute).
    assert dt.timedelta(minutes=54) < credentials.renew_before - now < dt.timedelta(hours=1)
    assert expiration(credentials) == credentials.renew_before


def test_kopf_is_told_when_to_log_in_again(tmp_path: Path) -> None:
    static = Credentials(authorization="Bearer x")
    assert expiration(static) is None  # a static token: only after a 401
    lapsed = Credentials(authorization="Bearer x",
                         renew_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    soonest = expiration(lapsed)
    assert soonest is not None  # a plugin handing out expired tokens: not a login loop
    assert soonest - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=MIN_LIFETIME - 1)

    config = KubeConfig.from_file(kubeconfig(
        tmp_path / "kc", {"exec": plugin(tmp_path, credential("tok-{n}", 3600))}))
    login = KopfLogin(config)
    first = login()
    assert (first.scheme, first.token) == ("Bearer", "tok-{n}")
    assert first.expiration == config.auth.current().renew_before
    login()  # kopf asks again (expired or refused): the plugin runs again
    assert (tmp_path / "runs").read_text() == "xx"


@pytest.mark.parametrize("module", ["paykube.operator", "paykube_webhook"])
def test_the_programs_stop_at_start_when_the_plugin_fails(tmp_path: Path, module: str) -> None:
    """No API server needed: the kubeconfig is loaded before anything connects."""
    section = plugin(tmp_path, "sys.stderr.write('token expired: run aws sso login')\n"
                               "sys.exit(1)\n")
    config = kubeconfig(tmp_path / "kc", {"exec": section})
    result = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'webhook'}", "KUBECONFIG": str(config)},
        check=False)
    assert result.returncode == 2, result.stderr
    assert "cannot use the kubeconfig" in result.stderr and sys.executable in result.stderr
    assert "Traceback" not in result.stderr
