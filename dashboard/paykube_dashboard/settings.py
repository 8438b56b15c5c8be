"""The dashboard's settings: its own knobs (PAYKUBE_DASHBOARD_*) beside the core settings,
which bring the database (URL, URL file or RDS secret), the secrets TTL and the log level."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from paykube.settings import SecretStr, Settings


@dataclass(frozen=True)
class DashboardSettings:
    core: Settings = field(default_factory=Settings)
    host: str = "0.0.0.0"  # noqa: S104 -- a pod serves on its own IP
    port: int = 8080
    username: str = ""
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    username_file: str = ""  # mounted Secret files; re-read every core.secrets_ttl
    password_file: str = ""
    processing_threshold: float = 3600.0  # seconds in Processing before it needs attention
    refresh: int = 30  # seconds between live refreshes of the overview (0: none)
    # Seconds between background recomputations of the 7d and 30d overviews (0: always
    # computed on request): on a big mirror they read the most rows.
    cache_seconds: float = 60.0
    page_size: int = 50
    failed_login_delay: float = 0.5  # first delay after a wrong password; doubles per failure
    failed_login_max_delay: float = 8.0

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 500:
            raise ValueError("PAYKUBE_DASHBOARD_PAGE_SIZE must be between 1 and 500")
        if self.refresh < 0 or self.processing_threshold <= 0 or self.cache_seconds < 0:
            raise ValueError("PAYKUBE_DASHBOARD_REFRESH and _CACHE_SECONDS must be >= 0 and "
                             "PAYKUBE_DASHBOARD_PROCESSING_THRESHOLD > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env
        base = cls()

        def get(name: str, default: object) -> str:
            return env.get(f"PAYKUBE_DASHBOARD_{name}", str(default))

        return cls(
            core=Settings.from_env(env),
            host=get("HOST", base.host),
            port=int(get("PORT", base.port)),
            username=get("USERNAME", ""),
            password=SecretStr(get("PASSWORD", "")),
            username_file=get("USERNAME_FILE", ""),
            password_file=get("PASSWORD_FILE", ""),
            processing_threshold=float(get("PROCESSING_THRESHOLD", base.processing_threshold)),
            refresh=int(get("REFRESH", base.refresh)),
            cache_seconds=float(get("CACHE_SECONDS", base.cache_seconds)),
            page_size=int(get("PAGE_SIZE", base.page_size)),
            failed_login_delay=float(get("FAILED_LOGIN_DELAY", base.failed_login_delay)),
            failed_login_max_delay=float(get("FAILED_LOGIN_MAX_DELAY",
                                             base.failed_login_max_delay)),
        )
