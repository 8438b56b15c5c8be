"""The dashboard in a real browser (headless Chromium) against the real process and MariaDB
with known data: each page's numbers and rows against the database, filters and keyset
pagination, the timeline against the ledger, hostile text shown as text, the CSP, a phone
width, axe-core's accessibility rules, and a screenshot of every page."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import pytest

from paykube_dashboard.money import format_amount
from tests.plugins.dashboard_fixtures import (
    HOSTILE,
    Browser,
    DashboardData,
    RunningDashboard,
)

pytestmark = pytest.mark.integration

PAGES = ["/", "/attention", "/sessions", "/errors"]


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _window(data: DashboardData, hours: float | None = None) -> tuple[dt.datetime, str]:
    """A custom window (exact, unlike a preset that moves with the clock): everything
    seeded, or the last `hours` before the seed's `now`."""
    end = data.now + dt.timedelta(minutes=5)
    start = end - (dt.timedelta(hours=hours) if hours else dt.timedelta(days=5))
    return start, urlencode({"window": "custom", "from": _iso(start), "to": _iso(end)})


def check_page(browser: Browser, name: str) -> None:
    """What every page must pass: no console error, no serious or critical axe violation;
    then a screenshot."""
    errors = browser.console_errors()
    assert errors == [], errors
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in browser.axe() if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    browser.screenshot(name)


def test_overview_numbers_match_the_database(browser: Browser, dashboard_data: DashboardData
                                             ) -> None:
    for hours in (None, 6):
        start, query = _window(dashboard_data, hours)
        end = dashboard_data.now + dt.timedelta(minutes=5)
        browser.open(f"/?{query}")
        phases = dict(dashboard_data.rows(
            "SELECT phase, COUNT(*) FROM payment_sessions WHERE created_at >= :s "
            "AND created_at < :e GROUP BY phase",
            s=start, e=end))
        assert int(browser.text("#kpi-created")) == sum(phases.values()) > 0
        for phase in ("Paid", "Expired", "Failed", "Canceled"):
            assert int(browser.text(f"#kpi-{phase.lower()}")) == phases.get(phase, 0)
        ended = sum(phases.get(p, 0) for p in ("Paid", "Expired", "Failed", "Canceled"))
        if ended:
            assert browser.text("#kpi-conversion") == f"{phases.get('Paid', 0) / ended:.1%}"
            assert browser.text("#kpi-abandonment") == \
                f"{phases.get('Expired', 0) / ended:.1%}"
        collected = dict(dashboard_data.rows(
            "SELECT currency, SUM(COALESCE(amount_total, amount)) FROM payment_sessions "
            "WHERE created_at >= :s AND created_at < :e AND phase = 'Paid' GROUP BY currency",
            s=start, e=end))
        shown = {row.find_element("css selector", "th").text.lower():
                 int(row.find_element("css selector", "td").get_attribute("data-minor"))
                 for row in browser.all("#collected-table tbody tr")}
        assert shown == {c: int(v) for c, v in collected.items()}
        # Every phase count of each provider and namespace, from the tables beside the
        # charts; the chart's bars carry the same numbers in their titles.
        by_namespace = dashboard_data.rows(
            "SELECT namespace, phase, COUNT(*) FROM payment_sessions WHERE created_at >= :s "
            "AND created_at < :e GROUP BY namespace, phase", s=start, e=end)
        table = _phase_table(browser, "#namespaces ~ .table-wrap table, "
                                      "section[aria-labelledby=namespaces] table")
        assert table == {(ns, ph): n for ns, ph, n in by_namespace}
        titles = {t.get_attribute("textContent") for t in
                  browser.all("section[aria-labelledby=providers] svg rect title")}
        for provider, phase, n in dashboard_data.rows(
                "SELECT provider, phase, COUNT(*) FROM payment_sessions WHERE created_at >= :s "
                "AND created_at < :e GROUP BY provider, phase", s=start, e=end):
            assert f"{provider}: {n} {phase}" in titles
        series = browser.all("section[aria-labelledby=series] svg rect")
        assert sum(int(r.find_element("css selector", "title")
                       .get_attribute("textContent").split(": ")[1].split()[0])
                   for r in series) == sum(phases.values())
    check_page(browser, "overview")


def _phase_table(browser: Browser, css: str) -> dict[tuple[str, str], int]:
    table = browser.all(css)[0]
    heads = [th.text for th in table.find_elements("css selector", "thead th")][1:-1]
    out = {}
    for row in table.find_elements("css selector", "tbody tr"):
        key = row.find_element("css selector", "th").text
        for phase, cell in zip(heads, row.find_elements("css selector", "td")[:-1],
                               strict=True):
            if int(cell.text):
                out[(key, phase)] = int(cell.text)
    return out


def test_no_data_is_said_not_drawn(browser: Browser) -> None:
    browser.open("/?" + urlencode({"window": "custom", "from": "2001-01-01T00:00",
                                   "to": "2001-01-02T00:00"}))
    assert browser.text("#kpi-created") == "0"
    assert browser.text("#kpi-conversion") == "n/a"
    assert browser.all("svg.chart") == []
    assert len(browser.all(".nodata")) >= 3
    browser.screenshot("overview-no-data")


def test_attention_counts_match_the_database(browser: Browser, dashboard_data: DashboardData,
                                             dashboard: RunningDashboard) -> None:
    start, query = _window(dashboard_data)
    browser.open(f"/attention?{query}")
    # The page's "now" is the dashboard's clock when it answered: the database's, a moment
    # later, decides what is past expiry or old enough.
    now = dashboard_data.scalar("SELECT UTC_TIMESTAMP(6)")
    expected = {
        "expired-open": dashboard_data.scalar(
            "SELECT COUNT(*) FROM payment_sessions WHERE phase = 'Open' AND NOT deleted "
            "AND expires_at < :n", n=now),
        "errors": dashboard_data.scalar(
            "SELECT COUNT(*) FROM payment_sessions WHERE NOT deleted AND created_at >= :s "
            "AND (error_code IS NOT NULL OR synced = 0)", s=start),
        "deleted-away": dashboard_data.scalar(
            "SELECT COUNT(*) FROM payment_sessions WHERE deleted_while_away"),
        "outbox": dashboard_data.scalar(
            "SELECT COUNT(*) FROM payment_sessions WHERE outbox_since IS NOT NULL"),
        "stuck-processing": dashboard_data.scalar(
            "SELECT COUNT(*) FROM payment_sessions WHERE phase = 'Processing' "
            "AND NOT deleted AND created_at < :n - INTERVAL 1 HOUR", n=now),
    }
    for section, count in expected.items():
        shown = int(browser.all(f"#{section} .count")[0].get_attribute("data-count"))
        assert shown == count, section
        rows = browser.all(f"#{section}-section tbody tr")
        assert len(rows) == min(count, 50), section
    assert all(expected[k] > 0 for k in ("expired-open", "stuck-processing", "errors",
                                         "deleted-away", "outbox"))
    check_page(browser, "attention")


def test_sessions_filters_and_keyset_pagination(browser: Browser,
                                                dashboard_data: DashboardData) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.open("/sessions")
    newest = [r[0] for r in dashboard_data.rows(
        "SELECT uid FROM payment_sessions ORDER BY created_at DESC, uid DESC LIMIT 25")]
    assert [r.get_attribute("data-uid") for r in browser.all("#sessions-table tbody tr")] \
        == newest
    check_page(browser, "sessions")
    # The filter form, as a person uses it; then every page through "Next page".
    Select(browser.driver.find_element(By.NAME, "namespace")).select_by_value("shop")
    Select(browser.driver.find_element(By.NAME, "phase")).select_by_value("Paid")
    browser.driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    seen: list[str] = []
    for _ in range(20):
        seen += [r.get_attribute("data-uid") for r in browser.all("#sessions-table tbody tr")]
        more = browser.all("#next-page")
        if not more:
            break
        assert "cursor=" in more[0].get_attribute("href")
        more[0].click()
    expected = [r[0] for r in dashboard_data.rows(
        "SELECT uid FROM payment_sessions WHERE namespace = 'shop' AND phase = 'Paid' "
        "ORDER BY created_at DESC, uid DESC")]
    assert len(expected) > 25  # more than one page
    assert seen == expected
    # Currency and provider filters, and the search by name prefix and by exact uid.
    browser.open("/sessions?" + urlencode({"currency": "inr", "provider": "razorpay"}))
    count = dashboard_data.scalar("SELECT COUNT(*) FROM payment_sessions WHERE "
                                  "currency = 'inr' AND provider = 'razorpay'")
    assert len(browser.all("#sessions-table tbody tr")) == min(count, 25) > 0
    uid, name = dashboard_data.rows("SELECT uid, name FROM payment_sessions ORDER BY uid "
                                    "LIMIT 1")[0]
    for term in (uid, name):
        browser.open("/sessions?" + urlencode({"q": term}))
        assert [r.get_attribute("data-uid") for r in browser.all("#sessions-table tbody tr")
                ] == [uid]
    browser.open("/sessions?" + urlencode({"cursor": "not-a-cursor"}))
    assert "not valid" in browser.text("main")


def test_session_timeline_matches_the_ledger(browser: Browser,
                                             dashboard_data: DashboardData) -> None:
    uid = dashboard_data.rows(
        "SELECT s.uid FROM payment_sessions s JOIN payment_session_transitions t "
        "ON t.uid = s.uid AND t.phase = 'Processing' WHERE s.phase = 'Paid' "
        "ORDER BY s.uid LIMIT 1")[0][0]
    browser.open(f"/sessions/{uid}")
    ledger = dashboard_data.rows(
        "SELECT phase, at, source, event_id FROM payment_session_transitions WHERE uid = :u "
        "ORDER BY at", u=uid)
    items = browser.all("#timeline-list li")
    assert [i.get_attribute("data-phase") for i in items] == [r.phase for r in ledger]
    for item, step in zip(items, ledger, strict=True):
        assert step.at.isoformat() in item.text
        assert f"by {step.source}" in item.text
        if step.event_id:
            assert step.event_id in item.text
    row = dashboard_data.rows("SELECT name, namespace, amount, currency FROM "
                              "payment_sessions WHERE uid = :u", u=uid)[0]
    assert browser.text("#kubectl-command") == \
        f"kubectl get paymentsession {row.name} -n {row.namespace} -o yaml"
    assert browser.text("#uid") == uid
    assert row.currency.upper() in browser.text("#amount")
    check_page(browser, "session")
    # A failed one: the error's code, provider code, doc link and explanation.
    failed = dashboard_data.rows(
        "SELECT uid, error_code, error_doc_url, error_explanation FROM payment_sessions "
        "WHERE phase = 'Failed' AND error_doc_url LIKE 'https://%' ORDER BY uid LIMIT 1")[0]
    browser.open(f"/sessions/{failed.uid}")
    assert browser.text("#error-code") == failed.error_code
    assert browser.text("#error-explanation") == failed.error_explanation
    assert [a.get_attribute("href") for a in browser.all(".error-box a")] == \
        [failed.error_doc_url]
    check_page(browser, "session-failed")


def test_errors_page_matches_the_database(browser: Browser,
                                          dashboard_data: DashboardData) -> None:
    start, query = _window(dashboard_data)
    browser.open(f"/errors?{query}")
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for code, provider_code, currency, n, amount in dashboard_data.rows(
            "SELECT error_code, COALESCE(error_provider_code, ''), currency, COUNT(*), "
            "SUM(amount) FROM payment_sessions WHERE error_code IS NOT NULL AND "
            "created_at >= :s GROUP BY 1, 2, 3", s=start):
        entry = expected.setdefault((code, provider_code), {"count": 0, "amounts": {}})
        entry["count"] += n
        entry["amounts"][currency] = int(amount)
    shown: dict[tuple[str, str], dict[str, Any]] = {}
    for row in browser.all("#errors-table tbody tr"):
        key = (row.get_attribute("data-code"), row.get_attribute("data-provider-code"))
        shown[key] = {"count": int(row.find_element("css selector", "td.num").text),
                      "amounts": {a.get_attribute("data-currency"):
                                  int(a.get_attribute("data-minor"))
                                  for a in row.find_elements("css selector", ".amount")}}
    assert shown == expected
    counts = [int(v["count"]) for v in shown.values()]
    assert counts == sorted(counts, reverse=True)
    check_page(browser, "errors")


def test_hostile_text_is_shown_as_text(browser: Browser,
                                       dashboard_data: DashboardData) -> None:
    browser.open(f"/sessions/{dashboard_data.hostile_uid}")
    assert browser.text("#description") == HOSTILE
    assert browser.text("#error-message") == HOSTILE
    assert browser.text("#error-explanation") == HOSTILE
    assert HOSTILE in browser.text("#metadata-table")
    assert "<b>key</b>" in browser.text("#metadata-table")
    # Nothing ran and nothing was made an element; the javascript: URL is not a link.
    assert browser.driver.execute_script("return window.__pwned === undefined")
    assert browser.all("main img, main script, main b") == []
    assert browser.all(".error-box a") == []
    check_page(browser, "session-hostile")
    _, query = _window(dashboard_data)
    for path in (f"/attention?{query}", "/sessions?q=hostile", f"/errors?{query}"):
        browser.open(path)
        assert browser.driver.execute_script("return window.__pwned === undefined"), path
        assert browser.all("main img, main script") == [], path
        if path.startswith("/attention"):
            assert HOSTILE in browser.text("#errors-section")


def test_csp_stops_inline_script(browser: Browser) -> None:
    browser.open("/")
    # Inject an inline script the way an HTML injection would: the CSP must refuse it.
    browser.driver.execute_script(
        "window.__violations = 0;"
        "document.addEventListener('securitypolicyviolation', () => window.__violations++);"
        "const s = document.createElement('script');"
        "s.textContent = 'window.__inline = 1';"
        "document.body.appendChild(s);")
    assert browser.driver.execute_script("return window.__inline === undefined")
    assert browser.driver.execute_script("return window.__violations") >= 1
    assert any("Content Security Policy" in e["message"] for e in browser.console_errors())
    # The page's own script file runs (it is 'self'): live refresh is armed.
    assert browser.driver.execute_script("return document.body.dataset.refresh") == "600"


def test_phone_width_layout(browser: Browser, dashboard_data: DashboardData) -> None:
    browser.size(390, 844)
    try:
        for path, name in (("/", "overview-phone"), ("/attention", "attention-phone"),
                           ("/sessions", "sessions-phone"),
                           (f"/sessions/{dashboard_data.hostile_uid}", "session-phone"),
                           ("/errors?window=7d", "errors-phone")):
            browser.open(path)
            # The page never scrolls sideways; wide tables scroll inside their own box.
            overflow = browser.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
            assert browser.console_errors() == []
            browser.screenshot(name)
    finally:
        browser.size(1280, 900)


def test_session_refunds_and_net_collected(browser: Browser,
                                           dashboard_data: DashboardData) -> None:
    """A refunded session lists its PaymentRefunds (reserved ones by uid, a refused one by
    name) and what the provider reports refunded; the overview nets refunds per currency
    from the ledger."""
    uid = dashboard_data.refunded_uid
    session = dashboard_data.rows("SELECT namespace, name, currency FROM payment_sessions "
                                  "WHERE uid = :u", u=uid)[0]
    browser.open(f"/sessions/{uid}")
    assert browser.text("#amount-refunded") == format_amount(800, session.currency)
    expected = dashboard_data.rows(
        "SELECT name, phase, amount, refund_id FROM payment_refunds WHERE session_uid = :u "
        "OR (namespace = :ns AND session_name = :n AND session_uid IS NULL) "
        "ORDER BY created_at, uid", u=uid, ns=session.namespace, n=session.name)
    assert [r.name for r in expected] == ["refund-shipping", "refund-goodwill",
                                          "refund-too-much"]
    rows = browser.all("#refunds-table tbody tr")
    assert [r.get_attribute("data-phase") for r in rows] == [r.phase for r in expected]
    for row, refund in zip(rows, expected, strict=True):
        assert row.find_element("css selector", "th").text == refund.name
        cells = row.find_elements("css selector", "td")
        assert cells[0].get_attribute("data-minor") == (
            str(refund.amount) if refund.amount is not None else "")
        assert cells[2].text == (refund.refund_id or "")
    assert format_amount(500, session.currency) in browser.text("#refunds-table caption")
    check_page(browser, "session-refunds")

    start, query = _window(dashboard_data)
    end = dashboard_data.now + dt.timedelta(minutes=5)
    browser.open(f"/?{query}")
    sums: dict[str, dict[str, int]] = {}
    for currency, kind, amount in dashboard_data.rows(
            "SELECT currency, kind, SUM(amount) FROM payment_ledger WHERE at >= :s "
            "AND at < :e GROUP BY currency, kind", s=start, e=end):
        sums.setdefault(currency, {})[kind] = int(amount)
    shown = {row.find_element("css selector", "th").text.lower():
             tuple(int(row.find_element("css selector", f"td.{c}").get_attribute("data-minor"))
                   for c in ("received", "refunded", "net"))
             for row in browser.all("#net-table tbody tr")}
    assert shown == {c: (k.get("payment", 0), -k.get("refund", 0),
                         k.get("payment", 0) + k.get("refund", 0)) for c, k in sums.items()}
    assert shown[session.currency][1] == 500  # the succeeded refund; pending moves nothing
