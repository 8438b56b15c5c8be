"""The dashboard's pure logic: windows and buckets, money, charts (escaping, titles, no
data), cursors, Basic Auth checks and the failed-login throttle, filters, links."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paykube.basic_auth import credentials_match
from paykube.secrets.files import SecretSetting
from paykube.settings import SecretStr
from paykube_dashboard import charts
from paykube_dashboard.app import BadRequest, _filters, _safe_link
from paykube_dashboard.auth import BasicAuth, FailureThrottle, Verdict
from paykube_dashboard.money import format_amount
from paykube_dashboard.queries import (
    CursorError,
    Money,
    RefundSummary,
    SessionDetail,
    _money,
    decode_cursor,
    encode_cursor,
)
from paykube_dashboard.settings import DashboardSettings
from paykube_dashboard.windows import (
    MAX_BUCKETS,
    WindowError,
    bucket_for,
    format_age,
    parse_window,
)

NOW = dt.datetime(2026, 11, 29, 12, 0, 0)


@pytest.mark.parametrize(("key", "span", "bucket"), [
    ("15m", dt.timedelta(minutes=15), dt.timedelta(minutes=1)),
    ("1h", dt.timedelta(hours=1), dt.timedelta(minutes=5)),
    ("24h", dt.timedelta(hours=24), dt.timedelta(minutes=30)),
    ("7d", dt.timedelta(days=7), dt.timedelta(hours=6)),
    ("30d", dt.timedelta(days=30), dt.timedelta(days=1)),
])
def test_preset_windows(key: str, span: dt.timedelta, bucket: dt.timedelta) -> None:
    window = parse_window(key, None, None, NOW)
    assert (window.start, window.end, window.bucket) == (NOW - span, NOW, bucket)
    assert window.buckets <= MAX_BUCKETS


def test_custom_windows_and_their_errors() -> None:
    window = parse_window("custom", "2026-11-01T00:00", "2026-11-03T00:00", NOW)
    assert (window.start, window.end) == (dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 3))
    offset = parse_window("custom", "2026-11-01T01:00+01:00", None, NOW)
    assert (offset.start, offset.end) == (dt.datetime(2026, 11, 1), NOW)
    for args, words in [(("custom", None, None), "needs 'from'"),
                        (("custom", "yesterday", None), "not a time"),
                        (("custom", "2026-11-02T00:00", "2026-11-01T00:00"), "after"),
                        (("custom", "2025-01-01T00:00", None), "at most 92 days"),
                        (("1y", None, None), "unknown window")]:
        with pytest.raises(WindowError, match=words):
            parse_window(*args, NOW)


@given(st.timedeltas(min_value=dt.timedelta(minutes=1), max_value=dt.timedelta(days=92)))
def test_any_span_gets_at_most_max_buckets(span: dt.timedelta) -> None:
    assert span / bucket_for(span) <= MAX_BUCKETS


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (123456, "eur", "1,234.56 EUR"), (5, "usd", "0.05 USD"), (1999, "jpy", "1,999 JPY"),
    (1500, "kwd", "1.500 KWD"), (-250, "gbp", "-2.50 GBP"), (None, "usd", ""),
])
def test_amounts_in_major_units(minor: int | None, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_ages() -> None:
    assert [format_age(s) for s in (5, 125, 3600 * 5 + 60, 86400 * 3 + 3600)] == \
        ["5s", "2m", "5h 1m", "3d 1h"]


def test_charts_escape_text_and_title_every_bar() -> None:
    svg = charts.bar_breakdown("By <ns>", {"<script>x</script>": {"Paid": 3, "Open": 1}},
                               ["Paid", "Open"])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<title>&lt;script&gt;x&lt;/script&gt;: 3 Paid</title>" in svg
    assert 'role="img"' in svg and 'aria-label="By &lt;ns&gt;"' in svg
    series = charts.time_series("t", ["10:00", "11:00"], [{"Paid": 2}, {}], ["Paid"])
    assert series.count("<rect") == 1 and "10:00: 2 Paid" in series
    assert "style=" not in svg + series  # the CSP forbids inline style


def test_cursor_round_trip_and_forgeries() -> None:
    created = dt.datetime(2026, 11, 2, 3, 4, 5, 678)
    assert decode_cursor(encode_cursor(created, "uid-1")) == (created, "uid-1")
    bad = base64.urlsafe_b64encode(b'{"not": "a list"}').decode()
    for cursor in ("", "%%%", bad, base64.urlsafe_b64encode(b'["x", "y"]').decode()):
        with pytest.raises(CursorError):
            decode_cursor(cursor)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_match() -> None:
    password = SecretStr("s3cret")
    assert credentials_match(_basic("ops", "s3cret"), "ops", password)
    for header in (_basic("ops", "s3cre"), _basic("op", "s3cret"), _basic("ops", "s3cret "),
                   "Basic not-base64!", "Bearer abc", "", None):
        assert not credentials_match(header, "ops", password)
    assert not credentials_match(_basic("", ""), "", SecretStr(""))


def test_basic_auth_verdicts_and_files(tmp_path: Path) -> None:
    user_file, password_file = tmp_path / "user", tmp_path / "password"
    user_file.write_text("ops\n")
    password_file.write_text("first")
    clock = [0.0]
    auth = BasicAuth(SecretSetting(SecretStr(""), str(user_file), 10, lambda: clock[0]),
                     SecretSetting(SecretStr(""), str(password_file), 10, lambda: clock[0]))
    assert auth.check(_basic("ops", "first")) is Verdict.OK
    assert auth.check(None) is Verdict.MISSING
    assert auth.check(_basic("ops", "wrong")) is Verdict.WRONG
    password_file.write_text("second")
    assert auth.check(_basic("ops", "first")) is Verdict.OK  # cached within the TTL
    clock[0] = 11
    assert auth.check(_basic("ops", "second")) is Verdict.OK
    assert auth.check(_basic("ops", "first")) is Verdict.WRONG
    password_file.unlink()
    clock[0] = 30
    assert auth.check(_basic("ops", "second")) is Verdict.UNCONFIGURED
    empty = BasicAuth(SecretSetting(SecretStr(""), "", 10), SecretSetting(SecretStr(""), "", 10))
    assert empty.check(_basic("", "")) is Verdict.UNCONFIGURED


def test_failure_throttle_doubles_caps_forgets_and_stays_bounded() -> None:
    clock = [0.0]
    throttle = FailureThrottle(0.5, 4.0, forget_after=60, max_clients=2,
                               clock=lambda: clock[0])
    assert [throttle.failed("a") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert throttle.failed("b") == 0.5
    throttle.succeeded("b")
    assert throttle.failed("b") == 0.5
    clock[0] = 100  # a quiet minute later the record is forgotten
    assert throttle.failed("a") == 0.5
    throttle.failed("c")  # a third client evicts the oldest
    assert throttle.failed("b") == 0.5


def test_filters_refuse_what_the_list_cannot_use() -> None:
    f = _filters({"namespace": "shop", "phase": "Paid", "currency": "eur", "q": " order-1 ",
                  "from": "2026-11-01T00:00"})
    assert (f.namespace, f.phase, f.currency, f.search) == ("shop", "Paid", "eur", "order-1")
    assert f.created_from == dt.datetime(2026, 11, 1)
    for bad in ({"phase": "Stolen"}, {"currency": "EURO"}, {"namespace": "Shop!"},
                {"q": "x" * 256}, {"from": "yesterday"}, {"provider": "a b"}):
        with pytest.raises(BadRequest):
            _filters(bad)


def test_only_https_documentation_links() -> None:
    assert _safe_link("https://stripe.com/docs/x") == "https://stripe.com/docs/x"
    for url in ("javascript:alert(1)", "data:text/html,x", "http://x", "//evil", None, ""):
        assert _safe_link(url) is None


def test_settings_from_the_environment() -> None:
    s = DashboardSettings.from_env({"PAYKUBE_DASHBOARD_PORT": "9000",
                                    "PAYKUBE_DASHBOARD_PASSWORD": "pw",
                                    "PAYKUBE_DATABASE_URL": "mysql+pymysql://u:p@h/db"})
    assert (s.port, s.password.get(), s.core.database_url.get()) == (
        9000, "pw", "mysql+pymysql://u:p@h/db")
    assert "pw" not in repr(s)
    with pytest.raises(ValueError, match="PAGE_SIZE"):
        DashboardSettings.from_env({"PAYKUBE_DASHBOARD_PAGE_SIZE": "0"})


def test_credentials_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every well-formed header is decided by one hmac.compare_digest of the whole
    user:password pair (no early exit on the user name or the length)."""
    import hmac

    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for pair in ("ops:s3cret", "x:s3cret", "ops:s", "ops:s3cret-and-more"):
        credentials_match(_basic(*pair.split(":")), "ops", SecretStr("s3cret"))
    assert calls == [(g.encode(), b"ops:s3cret") for g in
                     ("ops:s3cret", "x:s3cret", "ops:s", "ops:s3cret-and-more")]


class _Movement:
    def __init__(self, currency: str, kind: str, amount: int | None) -> None:
        self.currency, self.kind, self.amount = currency, kind, amount


def test_money_nets_refunds_against_payments_per_currency() -> None:
    # Ledger sums per (currency, kind): refunds are negative, a bank's return adds back.
    money = _money([_Movement("usd", "payment", 1999), _Movement("usd", "refund", -750),
                    _Movement("eur", "refund", -100), _Movement("jpy", "payment", 500),
                    _Movement("gbp", "payment", None)])
    assert money == {"eur": Money(0, 100), "gbp": Money(0, 0), "jpy": Money(500, 0),
                     "usd": Money(1999, 750)}
    assert [m.net for m in money.values()] == [-100, 0, 500, 1249]
    assert list(money) == sorted(money)


def test_a_sessions_refunded_sum_counts_succeeded_refunds_only() -> None:
    def refund(phase: str, amount: int | None) -> RefundSummary:
        return RefundSummary(uid=phase, name=phase, phase=phase, amount=amount,
                             requested_amount=amount, currency="usd", refund_id=None,
                             error_code=None, created_at=NOW, updated_at=NOW, deleted=False)

    detail = SessionDetail({}, [], [refund("Succeeded", 500), refund("Pending", 300),
                                    refund("Failed", None), refund("Succeeded", 200),
                                    refund("Canceled", 50)])
    assert detail.refunded == 700
