"""The aiohttp application: five read-only pages over the mirror, probes and metrics.

Thin handlers: parse the query, run one query object method in a thread, render a Jinja2
template (autoescaped). Middlewares add the security headers to every response, count and
time requests, demand Basic Auth (all but the probes) and turn errors into plain pages.
Only GET (and HEAD) routes exist: a POST anywhere is answered 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paykube.api.types import Phase
from paykube.errors import PaykubeError
from paykube.secrets.files import SecretSetting
from paykube.settings import SecretStr
from paykube_dashboard import charts
from paykube_dashboard.auth import BasicAuth, FailureThrottle, Verdict
from paykube_dashboard.metrics import DashboardMetrics
from paykube_dashboard.money import format_amount
from paykube_dashboard.queries import (
    COUNT_CAP,
    PHASES,
    Attention,
    CursorError,
    DashboardQueries,
    Filters,
    Overview,
)
from paykube_dashboard.settings import DashboardSettings
from paykube_dashboard.windows import (
    CUSTOM,
    PRESETS,
    Window,
    WindowError,
    format_age,
    format_time,
    parse_time,
    parse_window,
)

log = logging.getLogger("paykube.dashboard")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PUBLIC = frozenset({"/healthz", "/readyz"})
WARM_WINDOWS = ("7d", "30d")  # the preset windows whose overview is kept precomputed
REALM = 'Basic realm="paykube-dashboard", charset="UTF-8"'
SECURITY_HEADERS = {
    # No inline script or style anywhere: the one script and the stylesheet are files.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-store",
}
_CURRENCY = re.compile(r"[a-z]{3}")
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}")
_UID = re.compile(r"[A-Za-z0-9-]{1,64}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message is shown to the user."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(amount=format_amount, time=format_time, age=format_age,
                       pct=lambda v: "n/a" if v is None else f"{v * 100:.1f}%",
                       phase_class=lambda p: "phase-" + "".join(c for c in str(p).lower()
                                                                if c.isalnum()),
                       safe_link=_safe_link,
                       zip_series=lambda labels, series: list(zip(labels, series,
                                                                   strict=True)))
    env.globals.update(presets=list(PRESETS), phases=PHASES, custom=CUSTOM)
    return env


def _safe_link(url: str | None) -> str | None:
    """Only https links become links; anything else (javascript:, data:) is text."""
    return url if url and url.startswith("https://") and len(url) <= 2048 else None


@dataclass
class DashboardService:
    settings: DashboardSettings
    queries: DashboardQueries
    metrics: DashboardMetrics = field(default_factory=DashboardMetrics)
    clock: Callable[[], dt.datetime] = utcnow
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        s = self.settings
        self.auth = BasicAuth(
            SecretSetting(SecretStr(s.username), s.username_file, s.core.secrets_ttl),
            SecretSetting(s.password, s.password_file, s.core.secrets_ttl))
        self.throttle = FailureThrottle(s.failed_login_delay, s.failed_login_max_delay)
        self.templates = _environment()
        self.warm: dict[str, tuple[float, Overview]] = {}

    # -- helpers ---------------------------------------------------------------------------

    def render(self, request: web.Request, template: str, status: int = 200,
               **context: Any) -> web.Response:
        page = self.templates.get_template(template).render(
            {"refresh": 0, **context}, path=request.path, query=dict(request.query))
        return web.Response(text=page, status=status, content_type="text/html",
                            charset="utf-8")

    def window(self, request: web.Request) -> Window:
        q = request.query
        return parse_window(q.get("window"), q.get("from"), q.get("to"), self.clock())

    async def run(self, method: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(method, *args)

    # -- pages -----------------------------------------------------------------------------

    async def compute_overview(self, window: Window) -> Overview:
        groups, series, movements = await asyncio.gather(
            *(self.run(part) for part in self.queries.overview_parts(window)))
        return self.queries.combine_overview(window, groups, series, movements)

    async def overview(self, request: web.Request) -> web.Response:
        window = self.window(request)
        cached = self.warm.get(window.key)
        if cached is not None and (time.monotonic() - cached[0]
                                   < 2 * self.settings.cache_seconds):
            data, as_of = cached[1], cached[1].window.end
            window = data.window
        else:
            data, as_of = await self.compute_overview(window), None
        labels = [_bucket_label(window, i) for i in range(window.buckets)]
        return self.render(
            request, "overview.html", window=window, o=data, labels=labels, as_of=as_of,
            refresh=self.settings.refresh, ratio_paid=data.ratio(Phase.PAID.value),
            ratio_expired=data.ratio(Phase.EXPIRED.value),
            series_chart=charts.time_series(
                f"Sessions created per {_bucket_name(window)} by phase, {window.label()}",
                labels, data.series, PHASES) if data.created else None,
            provider_chart=charts.bar_breakdown(
                f"Sessions by provider and phase, {window.label()}", data.by_provider,
                PHASES) if data.by_provider else None,
            namespace_chart=charts.bar_breakdown(
                f"Sessions by namespace and phase, {window.label()}", data.by_namespace,
                PHASES) if data.by_namespace else None)

    async def attention(self, request: web.Request) -> web.Response:
        window = self.window(request)
        threshold = dt.timedelta(seconds=self.settings.processing_threshold)
        now = self.clock()
        data = Attention(*await asyncio.gather(
            *(self.run(part) for part in self.queries.attention_parts(now, threshold,
                                                                      window))))
        return self.render(request, "attention.html", window=window, a=data, now=now,
                           cap=COUNT_CAP,
                           threshold=format_age(threshold.total_seconds()),
                           refresh=self.settings.refresh)

    async def sessions(self, request: web.Request) -> web.Response:
        filters = _filters(request.query)
        cursor = request.query.get("cursor") or None
        page, facets = await asyncio.gather(
            self.run(self.queries.sessions, filters, cursor, self.settings.page_size),
            self.run(self.queries.facets))
        next_query = ({**{k: v for k, v in request.query.items() if k != "cursor"},
                       "cursor": page.next_cursor} if page.next_cursor else None)
        first_query = {k: v for k, v in request.query.items() if k != "cursor"}
        return self.render(request, "sessions.html", page=page, f=filters, facets=facets,
                           next_query=next_query, first_query=first_query,
                           paged=cursor is not None)

    async def session(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        detail = await self.run(self.queries.session, uid) if _UID.fullmatch(uid) else None
        if detail is None:
            return self.render(request, "message.html", status=404, title="No such session",
                               message="The mirror holds no session with this uid.")
        return self.render(request, "session.html", d=detail, s=detail.row)

    async def errors(self, request: web.Request) -> web.Response:
        window = self.window(request)
        groups = await self.run(self.queries.errors, window)
        return self.render(request, "errors.html", window=window, groups=groups)

    async def keep_warm(self, _: web.Application) -> AsyncIterator[None]:
        """Recompute the long windows' overviews in the background, so that a request for
        them is answered from memory (at most `cache_seconds` old, said on the page)."""
        if not self.settings.cache_seconds:
            yield
            return
        task = asyncio.create_task(self._warm_loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _warm_loop(self) -> None:
        failing = False
        while True:
            for key in WARM_WINDOWS:
                window = parse_window(key, None, None, self.clock())
                try:
                    self.warm[key] = (time.monotonic(), await self.compute_overview(window))
                except PaykubeError as exc:
                    if not failing:  # once per outage, not once a minute
                        log.warning("overview not precomputed",
                                    extra={"code": exc.code.value, "reason": exc.message})
                    failing = True
                    break
                failing = False
            await asyncio.sleep(self.settings.cache_seconds)

    # -- probes and metrics ----------------------------------------------------------------

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready while the mirror answers (the dashboard has nothing to show otherwise)."""
        try:
            await self.run(self.queries.ping)
        except PaykubeError as exc:
            return web.json_response({"ready": False, "reason": exc.code.value,
                                      "message": exc.message}, status=503)
        return web.json_response({"ready": True})

    async def metrics_endpoint(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- middlewares -----------------------------------------------------------------------

    @web.middleware
    async def security_headers(self, request: web.Request,
                               handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404, 405 from the router: headers too
            response = web.Response(status=exc.status, text=exc.text or exc.reason,
                                    headers={k: v for k, v in exc.headers.items()
                                             if k.lower() in ("allow", "www-authenticate")})
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    @web.middleware
    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            # The path only: no query string, no header (credentials never reach a log).
            log.info("request", extra={"method": request.method, "route": route,
                                       "status": status, "ms": round(elapsed * 1000, 1)})

    @web.middleware
    async def authenticate(self, request: web.Request,
                           handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC:
            return await handler(request)
        verdict = self.auth.check(request.headers.get("Authorization"))
        client = request.remote or "unknown"
        if verdict is Verdict.OK:
            self.throttle.succeeded(client)
            return await handler(request)
        self.metrics.unauthorized.labels(verdict.value).inc()
        if verdict is Verdict.WRONG:
            self.metrics.failed_logins.inc()
            delay = self.throttle.failed(client)
            log.warning("dashboard login refused", extra={"client": client,
                                                          "delay_s": delay})
            await self.sleep(delay)
        return web.Response(status=401, text="unauthorized",
                            headers={"WWW-Authenticate": REALM})

    @web.middleware
    async def error_pages(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except (BadRequest, WindowError, CursorError) as exc:
            return self.render(request, "message.html", status=400, title="Bad request",
                               message=str(exc))
        except PaykubeError as exc:
            log.error("mirror unavailable", extra={"code": exc.code.value,
                                                   "reason": exc.message})
            return self.render(request, "message.html", status=503,
                               title="The mirror is not available",
                               message="The database behind this page does not answer "
                                       "right now; the page will work again when it does.")
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            return self.render(request, "message.html", status=500, title="Internal error",
                               message="Something went wrong; the log has the details.")


def _filters(query: Any) -> Filters:
    def pick(name: str, pattern: re.Pattern[str] | None = None,
             allowed: tuple[str, ...] | None = None) -> str | None:
        value = (query.get(name) or "").strip()
        if not value:
            return None
        if (allowed is not None and value not in allowed) or (
                pattern is not None and not pattern.fullmatch(value)):
            raise BadRequest(f"'{name}' has a value this list cannot filter by")
        return str(value)

    search = (query.get("q") or "").strip()
    if len(search) > 255:
        raise BadRequest("the search text is longer than 255 characters")
    try:
        created_from = parse_time(query["from"], "from") if query.get("from") else None
        created_to = parse_time(query["to"], "to") if query.get("to") else None
    except WindowError as exc:
        raise BadRequest(str(exc)) from None
    return Filters(namespace=pick("namespace", _NAME), phase=pick("phase", allowed=PHASES),
                   provider=pick("provider", re.compile(r"[a-z0-9_-]{1,32}")),
                   currency=pick("currency", _CURRENCY), created_from=created_from,
                   created_to=created_to, search=search or None)


def _bucket_name(window: Window) -> str:
    return format_age(window.bucket.total_seconds()).replace(" ", "")


def _bucket_label(window: Window, index: int) -> str:
    start = window.bucket_start(index)
    if window.bucket >= dt.timedelta(days=1):
        return start.strftime("%m-%d")
    if window.end - window.start > dt.timedelta(days=1):
        return start.strftime("%m-%d %H:%M")
    return start.strftime("%H:%M")


def create_app(service: DashboardService) -> web.Application:
    app = web.Application(middlewares=[service.security_headers, service.observe,
                                       service.authenticate, service.error_pages],
                          client_max_size=1024)
    app.router.add_get("/", service.overview)
    app.router.add_get("/attention", service.attention)
    app.router.add_get("/sessions", service.sessions)
    app.router.add_get("/sessions/{uid}", service.session)
    app.router.add_get("/errors", service.errors)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/readyz", service.readyz)
    app.router.add_get("/metrics", service.metrics_endpoint)
    app.router.add_static("/static", STATIC, follow_symlinks=False)
    app.cleanup_ctx.append(service.keep_warm)
    return app

