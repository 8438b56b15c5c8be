"""The dashboard process over HTTP: Basic Auth (401s, failed logins counted and slowed, a
rotated password taken without restart, nothing served without credentials), security
headers on every response, no route that accepts a write, a database user that cannot
write, and logs without credentials."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube_dev.dashboard_program import start_dashboard
from paykube_dev.services import MariaDB
from tests.plugins.dashboard_fixtures import DashboardData, RunningDashboard

pytestmark = pytest.mark.integration

PATHS = ["/", "/attention", "/sessions", "/sessions/some-uid", "/errors", "/metrics",
         "/static/style.css", "/static/refresh.js", "/no-such-page"]


def _metric(dashboard: RunningDashboard, name: str, labels: str = "") -> float:
    _, _, body = dashboard.get("/metrics", auth=dashboard.auth_header())
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_every_page_needs_the_right_credentials(dashboard: RunningDashboard) -> None:
    wrong = dashboard.auth_header("not-the-password")
    bad_user = "Basic " + base64.b64encode(b"root:" + dashboard.password.encode()).decode()
    # Every path without credentials; each kind of wrong credentials on two of them (a
    # wrong guess is slowed, so not all of them).
    attempts = [(path, None) for path in PATHS] + [
        (path, auth) for path in ("/", "/static/style.css")
        for auth in (wrong, bad_user, "Basic !!!", "Bearer x")]
    for path, auth in attempts:
        status, headers, body = dashboard.get(path, auth=auth)
        assert status == 401, (path, auth)
        assert headers["WWW-Authenticate"].startswith('Basic realm="paykube-dashboard"')
        assert body == "unauthorized"
    status, _, _ = dashboard.get("/", auth=dashboard.auth_header())
    assert status == 200
    # The probes answer without credentials (the kubelet has none) and show no data.
    assert dashboard.get("/healthz")[0] == 200
    status, _, body = dashboard.get("/readyz")
    assert (status, body) == (200, '{"ready": true}')


def _refusal_delays(dashboard: RunningDashboard) -> list[float]:
    """The delay of each refused login so far, from the dashboard's own log."""
    lines = dashboard.program.log.read_text().splitlines()
    return [float(entry["delay_s"]) for entry in map(json.loads, (
        line for line in lines if line.startswith("{")))
        if entry["message"] == "dashboard login refused"]


def test_failed_logins_are_counted_and_slowed(dashboard: RunningDashboard) -> None:
    before = _metric(dashboard, "paykube_dashboard_failed_logins_total")
    missing = _metric(dashboard, "paykube_dashboard_unauthorized_total", '{reason="missing"}')
    assert dashboard.get("/", auth=dashboard.auth_header())[0] == 200  # a clean record
    logged = len(_refusal_delays(dashboard))
    wrong = dashboard.auth_header(f"guess-{uuid.uuid4().hex}")
    started = time.monotonic()
    for _ in range(4):
        assert dashboard.get("/", auth=wrong)[0] == 401
    # 0.2 s doubling to the 0.8 s cap (the fixture's settings), each slept before the 401.
    assert time.monotonic() - started >= 0.2 + 0.4 + 0.8 + 0.8
    assert _refusal_delays(dashboard)[logged:] == [0.2, 0.4, 0.8, 0.8]
    assert _metric(dashboard, "paykube_dashboard_failed_logins_total") == before + 4
    # A browser's first request carries no credentials: not a failure, not slowed.
    assert dashboard.get("/")[0] == 401
    assert _metric(dashboard, "paykube_dashboard_unauthorized_total",
                   '{reason="missing"}') == missing + 1
    assert _metric(dashboard, "paykube_dashboard_failed_logins_total") == before + 4
    assert len(_refusal_delays(dashboard)) == logged + 4
    # The right password passes and clears the client's record: the next failure starts
    # again at the first delay.
    assert dashboard.get("/attention", auth=dashboard.auth_header())[0] == 200
    assert dashboard.get("/", auth=wrong)[0] == 401
    assert _refusal_delays(dashboard)[-1] == 0.2


def test_a_rotated_password_is_taken_without_restart(dashboard: RunningDashboard) -> None:
    old = dashboard.password
    new = f"rotated-{uuid.uuid4().hex}"
    pid = dashboard.program.proc.pid
    dashboard.password_file.write_text(new)
    try:
        deadline = time.monotonic() + 10  # the fixture's TTL is 1 s
        while dashboard.get("/", auth=dashboard.auth_header(new))[0] != 200:
            assert time.monotonic() < deadline, "the new password was never accepted"
            time.sleep(0.2)
        assert dashboard.get("/", auth=dashboard.auth_header(old))[0] == 401
        assert dashboard.program.proc.pid == pid and dashboard.program.proc.poll() is None
    finally:
        dashboard.password_file.write_text(old)
        deadline = time.monotonic() + 10
        while dashboard.get("/", auth=dashboard.auth_header(old))[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_without_configured_credentials_nothing_is_served(
        dashboard_data: DashboardData, tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(dashboard_data.read_only_url)
    program = start_dashboard(tmp_path / "dashboard.log",
                              {"PAYKUBE_DATABASE_URL_FILE": str(url_file)})
    try:
        anything = "Basic " + base64.b64encode(b":").decode()
        for auth in (None, anything):
            request_auth = {"Authorization": auth} if auth else {}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(program.url + "/",
                                                              headers=request_auth),
                                       timeout=10)
            assert refused.value.code == 401
    finally:
        program.stop()


def test_security_headers_on_every_response(dashboard: RunningDashboard) -> None:
    auth = dashboard.auth_header()
    for path, auth_header in [*((p, auth) for p in PATHS), ("/", None), ("/healthz", None)]:
        _, headers, _ = dashboard.get(path, auth=auth_header)
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"


def test_no_route_accepts_a_write(dashboard: RunningDashboard,
                                  dashboard_data: DashboardData) -> None:
    before = dashboard_data.scalar("SELECT COUNT(*) FROM payment_sessions")
    auth = dashboard.auth_header()
    for path in [*PATHS, "/healthz", "/readyz", "/static/"]:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            status, headers, _ = dashboard.get(path, auth=auth, method=method)
            assert status in (404, 405), (method, path, status)
            if status == 405:
                assert set(headers["Allow"].replace(" ", "").split(",")) <= {"GET", "HEAD"}
            assert dashboard.get(path, method=method)[0] in (401, 404, 405)
    # No page has a form that could send anything but a GET.
    for path in ("/", "/attention", "/sessions", "/errors"):
        _, _, body = dashboard.get(path, auth=auth)
        assert re.findall(r'<form[^>]*method="(\w+)"', body) != [] or path == "/errors"
        assert set(re.findall(r'<form[^>]*method="(\w+)"', body)) <= {"get"}
    assert dashboard_data.scalar("SELECT COUNT(*) FROM payment_sessions") == before


def test_the_dashboards_database_user_cannot_write(dashboard_data: DashboardData) -> None:
    engine = sqlalchemy.create_engine(dashboard_data.read_only_url, poolclass=NullPool)
    uid = dashboard_data.hostile_uid
    statements = [
        "UPDATE payment_sessions SET phase = 'Paid' WHERE uid = :u",
        "DELETE FROM payment_sessions WHERE uid = :u",
        "INSERT INTO payment_session_transitions (uid, phase, phase_rank, recorded_at) "
        "VALUES (:u, 'Paid', 3, NOW())",
        "DROP TABLE payment_session_transitions",
        "CREATE TABLE stolen (x INT)",
        # The refund tables of revision 0004: readable (the grant is database-wide), no more.
        "UPDATE payment_refunds SET phase = 'Succeeded'",
        "DELETE FROM payment_ledger",
        "INSERT INTO payment_refund_transitions (uid, phase, phase_rank, recorded_at) "
        "VALUES (:u, 'Failed', 3, NOW())",
    ]
    try:
        with engine.connect() as conn:
            for table in ("payment_sessions", "payment_refunds", "payment_ledger",
                          "payment_refund_transitions"):
                assert conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
                                    ).scalar_one() > 0, table
            for statement in statements:
                with pytest.raises(sqlalchemy.exc.DBAPIError) as refused:
                    conn.execute(sqlalchemy.text(statement), {"u": uid})
                conn.rollback()
                # 1142: command denied to user (MariaDB and MySQL).
                orig = refused.value.orig
                assert orig is not None and orig.args[0] == 1142, statement
    finally:
        engine.dispose()
    assert dashboard_data.scalar("SELECT phase FROM payment_sessions WHERE uid = :u",
                                 u=uid) == "Failed"


def test_a_rotated_database_password_is_taken_without_restart(
        dashboard: RunningDashboard, dashboard_data: DashboardData, mariadb: MariaDB) -> None:
    """The URL file's password changes (as a rotation writes it) and the server drops
    the old connections: the next page connects with the new one, same process."""
    url = sqlalchemy.engine.make_url(dashboard_data.read_only_url)
    url_file = Path(dashboard.env["PAYKUBE_DATABASE_URL_FILE"])
    new = f"db-{uuid.uuid4().hex[:12]}"
    assert url.username is not None
    mariadb.set_password(url.username, new)
    url_file.write_text(url.set(password=new).render_as_string(hide_password=False))
    admin = sqlalchemy.create_engine(mariadb.admin_url, poolclass=NullPool)
    with admin.connect() as conn:
        for (thread,) in conn.execute(sqlalchemy.text(
                "SELECT id FROM information_schema.processlist WHERE user = :u"),
                {"u": url.username}):
            conn.execute(sqlalchemy.text(f"KILL CONNECTION {int(thread)}"))
    admin.dispose()
    deadline = time.monotonic() + 15
    while dashboard.get("/sessions", auth=dashboard.auth_header())[0] != 200:
        assert time.monotonic() < deadline, "the dashboard never used the new password"
        time.sleep(0.3)
    url_file.write_text(dashboard_data.read_only_url)
    mariadb.set_password(url.username, url.password or "")


def test_logs_are_json_without_credentials(dashboard: RunningDashboard) -> None:
    dashboard.get("/?window=1h", auth=dashboard.auth_header())
    dashboard.get("/", auth=dashboard.auth_header("wrong-password-in-logs"))
    text = dashboard.program.log.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e.get("route") == "/" and e.get("status") == 200 for e in entries)
    assert any(e["message"] == "dashboard login refused" for e in entries)
    for secret in (dashboard.password, "wrong-password-in-logs",
                   base64.b64encode(f"ops:{dashboard.password}".encode()).decode()):
        assert secret not in text


def test_long_windows_are_served_precomputed_and_right(dashboard: RunningDashboard,
                                                       dashboard_data: DashboardData) -> None:
    """The 7d and 30d overviews come from the background computation (the page says when),
    with the same numbers as the database: every seeded session is within 7 days."""
    total = dashboard_data.scalar("SELECT COUNT(*) FROM payment_sessions")
    for window in ("7d", "30d"):
        deadline = time.monotonic() + 20
        while True:
            status, _, body = dashboard.get(f"/?window={window}", auth=dashboard.auth_header())
            assert status == 200
            if "Precomputed at" in body:
                break
            assert time.monotonic() < deadline, "the long window was never precomputed"
            time.sleep(0.5)
        created = re.search(r'id="kpi-created">(\d+)<', body)
        assert created is not None and int(created.group(1)) == total
