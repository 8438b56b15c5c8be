"""Redaction of provider error messages before they leave the process (to the model).

`redact` keeps the wording that explains an error ("must be at least 30 minutes from
Checkout Session creation") and replaces what could be a secret or personal value:
URLs, e-mail addresses, API keys and signing secrets, object ids, UUIDs, IP addresses,
long digit runs, quoted values, values after a colon (Stripe's "Invalid X: <value>"),
`key=value` values and metadata keys. It errs on the side of removing too much.
"""

from __future__ import annotations

import re

MAX_LENGTH = 300

_RULES: list[tuple[re.Pattern[str], str]] = [
    # URLs (also the ones with user:password@ and query strings) and bare www. hosts.
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://\S+"), "<url>"),
    (re.compile(r"\bwww\.\S+", re.IGNORECASE), "<url>"),
    # E-mail addresses.
    (re.compile(r"[\w.+\-%]+@[\w\-]+(?:\.[\w\-]+)+"), "<email>"),
    # Stripe keys and secrets (masked or not): sk_/pk_/rk_ live/test, whsec_.
    (re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[\w*]*"), "<key>"),
    (re.compile(r"\bwhsec_[\w*+/=]*"), "<key>"),
    # Bearer tokens / JWTs / AWS access keys.
    (re.compile(r"\bBearer\s+\S+", re.IGNORECASE), "Bearer <key>"),
    (re.compile(r"\beyJ[\w\-]+\.[\w\-]+\.[\w\-]+"), "<key>"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "<key>"),
    # UUIDs (object uids, idempotency keys).
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                r"[0-9a-fA-F]{12}\b"), "<uuid>"),
    # Provider object ids: cs_test_..., pi_3Lx..., acct_1A..., cus_Nx...
    (re.compile(r"\b[a-z]{1,12}_(?:live_|test_)?(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{6,}\b"), "<id>"),
    # IPv4 addresses.
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    # Metadata keys in parameter names are user data.
    (re.compile(r"\b(metadata\]?)\[[^\]]*\]"), r"\1[*]"),
    # Quoted values: '...', "...", and backticks unless they hold a parameter name.
    (re.compile(r"(?<![\w'])'[^'\n]*'(?!\w)"), "'<value>'"),
    (re.compile(r'"[^"\n]*"'), '"<value>"'),
    (re.compile(r"`(?![a-z_][a-z0-9_.\[\]*]*`)[^`\n]*`"), "`<value>`"),
    # key=value pairs.
    (re.compile(r"\b([A-Za-z_][\w.\-]*)=(?!<)[^\s,;&]+"), r"\1=<value>"),
    # What follows "Something: " up to the end of the sentence is a value in Stripe's
    # messages ("Invalid email address: ...", "Invalid currency: ...", "No such price: ...").
    (re.compile(r":[ \t]+(?!<\w+>$)[^\n;]*?(?=\.\s|\.?$|;|\n)"), ": <value>"),
    # Long digit runs: card and phone numbers, timestamps, amounts with separators.
    (re.compile(r"(?<![\w<])\+?\d(?:[\d\s\-().,]{3,}\d)(?![\w>])"), "<number>"),
    # Anything else that mixes letters and digits at length: tokens, hashes, ids.
    (re.compile(r"\b(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[\w\-]{12,}\b"), "<token>"),
]
_LONG_DIGITS = re.compile(r"\d{5,}")
_SPACES = re.compile(r"\s+")


def _number_or_keep(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    return "<number>" if digits >= 5 else text


def redact(message: str, *, max_length: int = MAX_LENGTH) -> str:
    """`message` with every value-like part replaced by a placeholder; pure."""
    text = message or ""
    for pattern, replacement in _RULES:
        if replacement == "<number>":
            text = pattern.sub(_number_or_keep, text)
        else:
            text = pattern.sub(replacement, text)
    text = _LONG_DIGITS.sub("<number>", text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text
