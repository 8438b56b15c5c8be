"""Secrets from files of a mounted Kubernetes Secret volume, re-read so that rotating the
Secret needs no restart.

The kubelet rewrites such a file when its Secret changes (never for a subPath mount); a
`SecretFile` reads it again once `ttl` seconds have passed, or at once after
`invalidate()` (the database refused the password it held). Errors name the file, never
its content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from paykube.errors import CredentialsError, ErrorCode
from paykube.settings import SecretStr, parse_secrets


class SecretFile:
    def __init__(self, path: Path, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self._ttl, self._clock = path, ttl, clock
        self._text = SecretStr("")
        self._read_at: float | None = None

    def text(self) -> SecretStr:
        """The file's content without surrounding whitespace; never empty."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            try:
                text = self.path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise CredentialsError(
                    f"cannot read the secret file {self.path}: {type(exc).__name__}",
                    code=ErrorCode.SECRETS_UNAVAILABLE) from None
            if not text:
                raise CredentialsError(f"the secret file {self.path} is empty",
                                       code=ErrorCode.SECRETS_UNAVAILABLE)
            self._text, self._read_at = SecretStr(text), now
        return self._text

    def values(self) -> tuple[SecretStr, ...]:
        """Several secrets in the file, comma- or newline-separated."""
        return parse_secrets(self.text().get())

    def invalidate(self) -> None:
        self._read_at = None


class SecretSetting:
    """One secret setting: the file's content when a file is configured (a mounted Secret
    key, re-read after `ttl`), else the value from the environment."""

    def __init__(self, value: SecretStr, path: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._value = value
        self._file = SecretFile(Path(path), ttl, clock) if path else None

    def __call__(self) -> SecretStr:
        return self._file.text() if self._file is not None else self._value

