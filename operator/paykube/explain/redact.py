"""Redaction of provider error messages before they leave the process (to the model).

`redact` keeps the wording that explains an error ("must be at least 30 minutes from
Checkout Session creation") and replaces what could be a secret or personal value:
URLs, e-mail addresses, API keys and signing secrets, object ids, UUIDs, IP addresses,
quoted values, values after a colon (Stripe's "Invalid X: <value>"), `key=value` values,
metadata keys, every number except a limit with its unit ("30 minutes", "40 characters")
or a currency amount ("$0.50"), and capitalised words that are neither a sentence's first
word nor a known Stripe/payments term: personal names and addresses in a message are
rarely quoted ("Customer Jane Doe cannot pay", "Address 12 Main Street is invalid"). It
errs on the side of removing too much.
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

# Numbers that carry the meaning of a limit, not a value: followed by a unit, or an amount.
_UNITS = (r"(?:second|minute|hour|day|week|month|year|character|key|item|line item|digit|"
          r"decimal place|cent|byte|attempt|request|time|product|price|session|"
          r"payment method)s?\b|%|percent\b")
_NUMBER = re.compile(rf"(?<![\w<$€£¥.,])\d+(?:[.,]\d+)*(?![\w>]|\s*(?:{_UNITS}))")
# Tokens that open with digits and go on with letters: house numbers ("221B"), postcodes.
_DIGITS_THEN_LETTERS = re.compile(r"(?<![\w<\-])\d+[A-Za-z][\w\-]*")
# A capitalised word (camel-case and O'Brien included) and an optional possessive.
_CAPITALISED = re.compile(r"(?<![\w<`\-])[A-Z][\w\-]*(?:['\u2019][A-Z][\w\-]*)*"
                          r"(?:['\u2019]s)?(?![\w>`])")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n)[\s\"'(]*$")
_NAME = "<name>"
_NAMES = re.compile(r"<name>(?:\s+<name>)+")

# Capitalised words that say what an error is about: Stripe objects and products, payment
# methods, card brands, protocols and units. Everything else capitalised mid-sentence is
# taken for a name.
_TERMS = frozenset([
    "Stripe", "Checkout", "Session", "Sessions", "API", "APIs", "Payment", "Payments",
    "PaymentIntent", "PaymentIntents", "PaymentMethod", "PaymentMethods", "SetupIntent",
    "SetupIntents", "PaymentLink", "Intent", "Intents", "Method", "Methods", "Link",
    "Links", "Customer", "Customers", "Invoice", "Invoices", "Subscription",
    "Subscriptions", "Price", "Prices", "Product", "Products", "Coupon", "Coupons",
    "Promotion", "Code", "Codes", "Tax", "Taxes", "Rate", "Rates", "Shipping", "Line",
    "Item", "Items", "Mode", "Account", "Accounts", "Connect", "Connected", "Express",
    "Standard", "Custom", "Platform", "Dashboard", "Radar", "Billing", "Portal",
    "Terms", "Service", "Balance", "Charge", "Charges", "Refund", "Refunds", "Dispute",
    "Disputes", "Payout", "Payouts", "Transfer", "Transfers", "Event", "Events",
    "Webhook", "Webhooks", "Endpoint", "Endpoints", "Key", "Keys", "Secret",
    "Publishable", "Restricted", "Test", "Live", "Idempotency", "Request", "Requests",
    "Card", "Cards", "Bank", "Debit", "Direct", "Wallet", "Apple", "Google", "Pay",
    "Visa", "Mastercard", "American", "Amex", "Discover", "Diners", "Club", "JCB",
    "UnionPay", "Cartes", "Bancaires", "Interac", "SEPA", "BACS", "ACH", "BECS", "IBAN",
    "BIC", "Klarna", "Afterpay", "Clearpay", "Affirm", "Alipay", "WeChat", "Bancontact",
    "Giropay", "EPS", "Sofort", "P24", "Przelewy24", "Boleto", "OXXO", "Konbini",
    "PayPal", "Multibanco", "Zip", "Cash", "App", "CVC", "CVV", "AVS", "ZIP", "SCA",
    "PSD2", "3DS", "3D", "Secure", "ID", "IDs", "URL", "URLs", "HTTP", "HTTPS", "JSON",
    "ISO", "UTC", "GMT", "USD", "EUR", "GBP", "VAT", "EU", "US", "UK", "Kubernetes",
    "PaymentSession", "PaymentSessions", "Paykube", "Bearer", "OK", "I"
])
# Words that commonly begin a provider's sentence and are never a name: such a first word
# stays even when a name follows it ("Customer Jane Doe ...").
_STARTERS = frozenset([
    "A", "An", "The", "This", "That", "These", "Those", "It", "Its", "You", "Your",
    "We", "Our", "No", "Not", "Only", "Invalid", "Missing", "Unknown", "Unrecognized",
    "Received", "Cannot", "Can", "Could", "Must", "Please", "Sorry", "If", "When",
    "While", "Amount", "Address", "Name", "Value", "Field", "Parameter", "Customer",
    "Account", "Card", "Email", "Phone", "User", "Owner", "Holder", "Billing",
    "Shipping", "Recipient", "Sender", "Merchant", "Country", "City", "State", "Street",
    "Postal", "Currency", "Contact", "Ask", "Use", "Set", "Provide", "Check", "Update",
    "See", "Try", "Retry", "Remove", "Add", "Pass", "Specify"
])


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
    text = _DIGITS_THEN_LETTERS.sub(
        lambda m: m.group(0) if m.group(0) in _TERMS else "<value>", text)
    text = _NUMBER.sub("<number>", text)
    text = _redact_names(text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def _redact_names(text: str) -> str:
    """Replace capitalised words that are not sentence-initial and not `_TERMS` by
    `<name>` (one placeholder per run of them)."""
    words = list(_CAPITALISED.finditer(text))
    out: list[str] = []
    last = 0
    for i, match in enumerate(words):
        word = match.group(0)
        base = re.sub(r"['\u2019]s$", "", word)
        if base in _TERMS:
            continue
        if _SENTENCE_START.search(text, 0, match.start()) is not None:
            following = words[i + 1] if i + 1 < len(words) else None
            # "Jane Doe cannot pay": a sentence that opens with a name.
            name_follows = (following is not None
                            and text[match.end():following.start()].strip() == ""
                            and re.sub(r"['\u2019]s$", "", following.group(0)) not in _TERMS)
            if base in _STARTERS or not name_follows:
                continue
        out.append(text[last:match.start()])
        out.append(_NAME)
        last = match.end()
    out.append(text[last:])
    return _NAMES.sub(_NAME, "".join(out))
