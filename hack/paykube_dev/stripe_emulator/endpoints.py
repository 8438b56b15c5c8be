"""Validation of `/v1/webhook_endpoints` parameters, the way Stripe words refusals."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any
from urllib.parse import urlsplit

from . import errors
from .forms import Params
from .model import WebhookEndpoint

CREATE_PARAMS = frozenset({
    "api_version", "connect", "description", "enabled_events", "expand", "metadata", "url",
})
UPDATE_PARAMS = frozenset({
    "description", "disabled", "enabled_events", "expand", "metadata", "url",
})
_EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z_]+)?$")
_ALNUM = string.ascii_letters + string.digits


def new_secret() -> str:
    return "whsec_" + "".join(secrets.choice(_ALNUM) for _ in range(32))


def check_params(params: Params, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise errors.unknown_param(name)


def build_endpoint(params: Params, *, account_id: str, livemode: bool, now: int) -> WebhookEndpoint:
    check_params(params, CREATE_PARAMS)
    if "url" not in params:
        raise errors.missing("url")
    if "enabled_events" not in params:
        raise errors.missing("enabled_events")
    api_version = params.get("api_version")
    if api_version is not None and (
        not isinstance(api_version, str) or not _API_VERSION.match(api_version)
    ):
        raise errors.invalid("api_version", f"Invalid API version: {api_version}")
    return WebhookEndpoint(
        url=_url(params["url"]), secrets=[new_secret()], account_id=account_id,
        livemode=livemode, connect=_boolean(params, "connect"),
        enabled_events=_enabled_events(params["enabled_events"]), api_version=api_version,
        description=_description(params), metadata=_metadata(params.get("metadata")),
        created=now, via_api=True,
    )


def update_endpoint(endpoint: WebhookEndpoint, params: Params) -> None:
    """Apply a `POST /v1/webhook_endpoints/{id}`; nothing changes when a value is refused."""
    check_params(params, UPDATE_PARAMS)
    url = _url(params["url"]) if "url" in params else endpoint.url
    events = (_enabled_events(params["enabled_events"]) if "enabled_events" in params
              else endpoint.enabled_events)
    disabled = _boolean(params, "disabled") if "disabled" in params else endpoint.disabled
    description = _description(params) if "description" in params else endpoint.description
    metadata = dict(endpoint.metadata)
    for key, value in _raw_metadata(params.get("metadata")).items():
        if value == "":
            metadata.pop(key, None)
        else:
            metadata[key] = value
    endpoint.url, endpoint.enabled_events, endpoint.disabled = url, events, disabled
    endpoint.description, endpoint.metadata = description, metadata


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise errors.invalid("url", "Invalid URL: must be a string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.invalid("url", f"Invalid URL: {value}", "url_invalid")
    if len(value) > 5000:
        raise errors.invalid("url", "Invalid URL: must be at most 5000 characters")
    return value


def _enabled_events(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or items == [""]:
        raise errors.missing("enabled_events")
    events: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or (item != "*" and not _EVENT_TYPE.match(item)):
            raise errors.invalid(
                f"enabled_events[{i}]",
                f"Invalid enabled_events[{i}]: must be one of the event types or '*'",
            )
        if item not in events:
            events.append(item)
    return events


def _boolean(params: Params, name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise errors.invalid(name, f"Invalid boolean: {value}")
    return bool(value == "true")


def _description(params: Params) -> str | None:
    value = params.get("description")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 5000:
        raise errors.invalid("description", "Invalid string: must be at most 5000 characters")
    return value


def _raw_metadata(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise errors.invalid("metadata", "Invalid hash")
    for key, item in value.items():
        if not isinstance(item, str):
            raise errors.invalid(f"metadata[{key}]", "Invalid string")
        if len(key) > 40:
            raise errors.invalid(f"metadata[{key}]", "Metadata keys can have up to 40 characters.")
        if len(item) > 500:
            raise errors.invalid(
                f"metadata[{key}]", "Metadata values can have up to 500 characters.",
            )
    if len(value) > 50:
        raise errors.invalid("metadata", "Metadata can have up to 50 keys.")
    return {str(k): str(v) for k, v in value.items()}


def _metadata(value: Any) -> dict[str, str]:
    return {k: v for k, v in _raw_metadata(value).items() if v != ""}
