"""Structured JSON logs for both programs: one object per line, `extra` fields included.

Callers log codes, ids and object names, never secret values or personal data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_DROPPED = {"settings", "k8s_skip"}  # kopf attaches its whole settings object to each record


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_") or key in _DROPPED:
                continue
            if isinstance(value, str | int | float | bool) or value is None:
                entry[key] = value
            elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                entry[key] = value  # e.g. kopf's k8s_ref: the object's identity
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request logs of HTTP client libraries can carry URLs and headers: keep them quiet.
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "stomp.py"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
