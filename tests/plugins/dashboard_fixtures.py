"""The dashboard under test: a mirror database with known data (dashboard_seed), a
read-only database user, credentials in files, the real `paykube-dashboard` process, and
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium; nothing
is downloaded at run time) with axe-core from the npm registry (cached).

Screenshots go to $PAYKUBE_CACHE/artifacts/dashboard (printed at the end of the run).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube.mirror.migrate import migrate
from paykube.mirror.projection import project_refund, utcnow
from paykube.mirror.store import MirrorOp, MirrorStore
from paykube_dev.dashboard_program import start_dashboard
from paykube_dev.dashboard_seed import SeedSession, error_status, generate, seed, session
from paykube_dev.proc import CACHE_DIR
from paykube_dev.programs import Program
from paykube_dev.services import MariaDB

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_VERSION = "4.10.3"
ARTIFACTS = CACHE_DIR / "artifacts" / "dashboard"
USERNAME = "ops"
SEEDED = 300
# Hostile text in every field a person can put into a PaymentSession or an explanation.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
HOSTILE_NAME = "hostile-order"


@dataclass
class DashboardData:
    """The seeded mirror: its URLs (application user and read-only user), an admin
    engine for the tests' own SQL, and the time the data was generated around."""

    url: str
    read_only_url: str
    engine: sqlalchemy.Engine
    now: dt.datetime
    hostile_uid: str
    refunded_uid: str = ""  # a Paid session with PaymentRefunds (seed_refunds)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sqlalchemy.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sqlalchemy.text(sql), params))


@dataclass
class RunningDashboard:
    program: Program
    password_file: Path
    username_file: Path
    password: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.program.url

    def auth_header(self, password: str | None = None) -> str:
        raw = f"{USERNAME}:{password or self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def get(self, path: str, *, auth: str | None = None, method: str = "GET",
            timeout: float = 10.0) -> tuple[int, dict[str, str], str]:
        """Status, headers and body of one request (any status, never raises for 4xx)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


REFUNDS = (  # name, phase path, amount (None: refused before reservation), asked
    ("refund-shipping", ("Pending", "Succeeded"), 500, 500),
    ("refund-goodwill", ("Pending",), 300, 300),
    ("refund-too-much", ("Failed",), None, 10**9),
)


def seed_refunds(engine: sqlalchemy.Engine, now: dt.datetime) -> str:
    """PaymentRefunds of the newest Paid session, written through the mirror's own
    `MirrorStore.apply`; the session reports 800 refunded (pending and succeeded)."""
    with engine.connect() as conn:
        session_row = conn.execute(sqlalchemy.text(
            "SELECT uid, namespace, name, currency FROM payment_sessions WHERE phase = 'Paid' "
            "AND deleted = 0 ORDER BY created_at DESC, uid LIMIT 1")).one()
    ops = []
    for i, (name, path, amount, asked) in enumerate(REFUNDS):
        at = now - dt.timedelta(minutes=30 - i)
        status: dict[str, Any] = {
            "phase": path[-1],
            "history": [{"phase": p, "at": (at + dt.timedelta(seconds=j)).isoformat() + "Z",
                         "source": "operator", "published": True} for j, p in enumerate(path)]}
        if amount is None:
            status["error"] = {"code": "AmountExceedsRefundable", "retryable": False,
                               "message": "more than the refundable rest"}
        else:
            status |= {"provider": "stripe", "sessionUid": session_row.uid, "amount": amount,
                       "currency": session_row.currency, "paymentId": "pi_seeded",
                       "refundId": f"re_seeded_{i}"}
        manifest = {"metadata": {"uid": str(uuid.uuid4()), "name": name,
                                 "namespace": session_row.namespace, "resourceVersion": "7",
                                 "creationTimestamp": at.isoformat() + "Z"},
                    "spec": {"sessionRef": {"name": session_row.name}, "amount": asked},
                    "status": status}
        proj = project_refund(manifest)
        ops.append(MirrorOp(proj.uid, proj))
    MirrorStore(engine).apply(ops)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE payment_sessions SET amount_refunded = 800 "
                                     "WHERE uid = :u"), {"u": session_row.uid})
    return str(session_row.uid)


def hostile_session(now: dt.datetime) -> dict[str, Any]:
    created = now - dt.timedelta(hours=2)
    error = error_status(0)
    error.update(message=HOSTILE, explanation=HOSTILE, docUrl="javascript:window.__pwned=3")
    return session(
        name=HOSTILE_NAME, namespace="shop", created=created, amount=4200, currency="eur",
        steps=[("Pending", created, "operator"), ("Failed", created, "operator")],
        description=HOSTILE, metadata={"note": HOSTILE, "<b>key</b>": "x"}, error=error,
        synced=(False, "ProviderRejected"), resource_version=99)


@pytest.fixture(scope="session")
def dashboard_data(mariadb: MariaDB) -> Iterator[DashboardData]:
    url = mariadb.create_database(f"dash_{uuid.uuid4().hex[:8]}")
    migrate(url)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    now = utcnow().replace(microsecond=0)
    hostile = hostile_session(now)
    seed(engine, [*generate(SEEDED, now=now - dt.timedelta(minutes=1)),
                  SeedSession(hostile)])
    refunded = seed_refunds(engine, now)
    user, password = "dash_ro", secrets.token_hex(12)
    database = sqlalchemy.engine.make_url(url).database
    with mariadb.temporary_user(user, password, grant="SELECT", database=database):
        read_only = str(sqlalchemy.engine.make_url(url).set(username=user, password=password)
                        .render_as_string(hide_password=False))
        yield DashboardData(url, read_only, engine, now, hostile["metadata"]["uid"],
                            refunded)
    engine.dispose()


@pytest.fixture(scope="session")
def dashboard(dashboard_data: DashboardData,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDashboard]:
    directory = tmp_path_factory.mktemp("dashboard")
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir()
    password = secrets.token_urlsafe(16)
    (secrets_dir / "username").write_text(USERNAME)
    (secrets_dir / "password").write_text(password + "\n")
    (secrets_dir / "database-url").write_text(dashboard_data.read_only_url)
    env = {"PAYKUBE_DATABASE_URL_FILE": str(secrets_dir / "database-url"),
           "PAYKUBE_DASHBOARD_USERNAME_FILE": str(secrets_dir / "username"),
           "PAYKUBE_DASHBOARD_PASSWORD_FILE": str(secrets_dir / "password"),
           "PAYKUBE_SECRETS_TTL": "1", "PAYKUBE_DASHBOARD_REFRESH": "600",
           "PAYKUBE_DASHBOARD_PAGE_SIZE": "25",
           "PAYKUBE_DASHBOARD_FAILED_LOGIN_DELAY": "0.2",
           "PAYKUBE_DASHBOARD_FAILED_LOGIN_MAX_DELAY": "0.8"}
    program = start_dashboard(directory / "dashboard.log", env)
    try:
        yield RunningDashboard(program, secrets_dir / "password", secrets_dir / "username",
                               password, env)
    finally:
        program.stop()


def axe_source() -> str:
    """axe-core's minified build from the npm registry (`npm pack`), cached; MPL-2.0."""
    target = CACHE_DIR / "npm" / f"axe-core-{AXE_VERSION}"
    script = target / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed once to fetch axe-core (apt-get install npm)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--silent"], cwd=tmp,
                           check=True, capture_output=True, timeout=180)
            with tarfile.open(Path(tmp) / f"axe-core-{AXE_VERSION}.tgz") as archive:
                staging = Path(tmp) / "out"
                archive.extractall(staging, filter="data")
            target.mkdir(parents=True, exist_ok=True)
            for name in ("axe.min.js", "LICENSE"):
                shutil.copy(staging / "package" / name, target / name)
    return script.read_text()


class Browser:
    """Headless Chromium through Selenium, sending the dashboard's Basic credentials."""

    def __init__(self, driver: Any, base_url: str, artifacts: Path) -> None:
        self.driver, self.base_url, self.artifacts = driver, base_url, artifacts
        self.screenshots: list[Path] = []
        self._axe: str | None = None

    def authenticate(self, header: str | None) -> None:
        headers = {"Authorization": header} if header else {}
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})

    def open(self, path: str) -> None:
        self.console_errors()  # drop what earlier pages logged
        self.driver.get(self.base_url + path)

    def size(self, width: int, height: int) -> None:
        self.driver.set_window_size(width, height)

    def console_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        """A full-page PNG (the page's whole height) under the artifacts directory."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"],
                     "height": min(size["height"], 6000), "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        self.screenshots.append(path)
        return path

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations on the current page (WCAG 2 A/AA and best practices)."""
        if self._axe is None:
            self._axe = axe_source()
        self.driver.execute_script(self._axe)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
            ".then(r => done(JSON.stringify(r.violations)), e => done('ERROR ' + e));")
        assert not str(result).startswith("ERROR"), result
        violations: list[dict[str, Any]] = json.loads(result)
        return violations

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))


@pytest.fixture(scope="session")
def browser(dashboard: RunningDashboard,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are missing: run hack/install-services.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs, nothing is downloaded.
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path_factory.mktemp("chromedriver") / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Network.enable", {})
    artifacts = Path(os.environ.get("PAYKUBE_DASHBOARD_ARTIFACTS", ARTIFACTS))
    shutil.rmtree(artifacts, ignore_errors=True)
    browser = Browser(driver, dashboard.url, artifacts)
    browser.authenticate(dashboard.auth_header())
    try:
        yield browser
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        _SHOTS.extend(browser.screenshots)


_SHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the screenshots are (CI keeps them as artifacts)."""
    if _SHOTS:
        terminalreporter.write_line("dashboard screenshots:")
        for path in _SHOTS:
            terminalreporter.write_line(f"  {path}")
