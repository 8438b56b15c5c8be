"""Amounts in a currency's minor unit, shown in its major unit (ISO 4217 exponents)."""

from __future__ import annotations

# Currencies whose minor unit is the major unit (Stripe's zero-decimal list), and those
# with three decimals; every other currency has two.
_ZERO = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                   "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
_THREE = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def exponent(currency: str) -> int:
    code = currency.lower()
    return 0 if code in _ZERO else 3 if code in _THREE else 2


def format_amount(minor: int | None, currency: str) -> str:
    """`123456, 'eur'` -> `1,234.56 EUR`; exact (integer arithmetic, no floats)."""
    if minor is None:
        return ""
    digits = exponent(currency)
    sign = "-" if minor < 0 else ""
    major, fraction = divmod(abs(minor), 10**digits)
    text = f"{major:,}" + (f".{fraction:0{digits}d}" if digits else "")
    return f"{sign}{text} {currency.upper()}"
