"""Accounts, their API keys, and Connect: who a request acts as.

Every key belongs to one account (`acct_` + 16 alphanumerics). A key the emulator has not
seen gets an account of its own, with an id derived from the key, so that a test can know
it beforehand (`account_id_for_key`). Tests create accounts explicitly to give one account
several keys (rotation) or to connect accounts to a platform (Connect).
"""

from __future__ import annotations

import collections
import hashlib
import re
import string
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .model import Event, JsonObject, Session, mask_key

SECRET_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{8,32}$")
_ALNUM = string.ascii_letters + string.digits


def is_live(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))


def is_secret_key(key: str) -> bool:
    return key.startswith(SECRET_KEY_PREFIXES) and len(key) > 8


def account_id_for_key(key: str) -> str:
    """The id of the account a key not registered beforehand gets: stable per key."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big")
    chars = []
    for _ in range(16):
        digest, index = divmod(digest, len(_ALNUM))
        chars.append(_ALNUM[index])
    return "acct_" + "".join(chars)


@dataclass
class IdempotentResult:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Account:
    """One Stripe account: its keys, its objects (both modes), its Connect links."""

    id: str
    created: int
    keys: list[str] = field(default_factory=list)
    platform: str | None = None
    email: str | None = None
    business_name: str | None = None
    country: str = "US"
    default_currency: str = "usd"
    auto: bool = False
    sessions: dict[str, Session] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    idempotency: dict[tuple[bool, str], IdempotentResult] = field(default_factory=dict)
    in_flight: set[tuple[bool, str]] = field(default_factory=set)
    recent: collections.deque[float] = field(default_factory=collections.deque)

    def to_api(self) -> JsonObject:
        """Stripe's account object (`GET /v1/account`); Stripe gives it no `livemode`."""
        name = self.business_name or f"Emulated account {self.id[-6:]}"
        return {
            "id": self.id, "object": "account",
            "business_profile": {
                "annual_revenue": None, "estimated_worker_count": None, "mcc": None,
                "name": name, "product_description": None, "support_address": None,
                "support_email": None, "support_phone": None, "support_url": None,
                "url": None,
            },
            "business_type": None,
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": True, "country": self.country,
            "controller": {"type": "account"} if self.platform is None else {
                "is_controller": False, "type": "application",
            },
            "created": self.created, "default_currency": self.default_currency,
            "details_submitted": True, "email": self.email, "metadata": {},
            "payouts_enabled": True,
            "settings": {
                "dashboard": {"display_name": name, "timezone": "Etc/UTC"},
                "payments": {"statement_descriptor": None},
            },
            "type": "standard",
        }

    def to_control(self) -> JsonObject:
        """The control plane's view: keys masked, Connect links, object counts."""
        return {
            "id": self.id, "keys": [mask_key(k) for k in self.keys], "platform": self.platform,
            "email": self.email, "business_name": self.business_name, "auto": self.auto,
            "created": self.created, "sessions": len(self.sessions),
            "events": len(self.events),
        }


@dataclass(frozen=True)
class Scope:
    """What one request acts as: the account (the connected one under `Stripe-Account`),
    the key's mode, and the key's own account."""

    account: Account
    key: str
    livemode: bool
    key_account: Account

    @property
    def connected(self) -> bool:
        return self.account is not self.key_account


class AccountBook:
    """Accounts by id and keys by value."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.key_owner: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.rejected: set[str] = set()

    def __len__(self) -> int:
        return len(self.accounts)

    def create(
        self, *, now: int, account_id: str | None = None, keys: list[str] | None = None,
        platform: str | None = None, email: str | None = None,
        business_name: str | None = None, country: str | None = None,
        default_currency: str | None = None,
    ) -> Account:
        """A new account; ValueError when the id or a key is taken or malformed."""
        keys = list(keys or [])
        if account_id is None:
            if not keys:
                raise ValueError("an account needs an id or at least one key")
            account_id = account_id_for_key(keys[0])
        if not ACCOUNT_ID.match(account_id):
            raise ValueError(f"account id {account_id!r} is not acct_ + 8..32 alphanumerics")
        if account_id in self.accounts:
            raise ValueError(f"account {account_id} exists")
        if platform is not None and platform not in self.accounts:
            raise ValueError(f"no platform account {platform}")
        for key in keys:
            self._check_new_key(key)
        account = Account(
            id=account_id, created=now, platform=platform, email=email,
            business_name=business_name, country=country or "US",
            default_currency=default_currency or "usd",
        )
        self.accounts[account_id] = account
        for key in keys:
            self._bind(account, key)
        return account

    def add_key(self, account: Account, key: str) -> None:
        self._check_new_key(key)
        self._bind(account, key)

    def _check_new_key(self, key: str) -> None:
        if not is_secret_key(key):
            raise ValueError(f"{mask_key(key)} is not a secret or restricted key")
        owner = self.key_owner.get(key)
        if owner is not None:
            raise ValueError(f"{mask_key(key)} already belongs to {owner}")

    def _bind(self, account: Account, key: str) -> None:
        account.keys.append(key)
        self.key_owner[key] = account.id

    def connect(self, platform: Account, account: Account) -> None:
        if platform is account:
            raise ValueError("an account cannot be connected to itself")
        if platform.platform is not None:
            raise ValueError(f"{platform.id} is itself connected to {platform.platform}")
        if account.platform not in (None, platform.id):
            raise ValueError(f"{account.id} is connected to {account.platform}")
        if self.connected_to(account):
            raise ValueError(f"{account.id} is a platform with connected accounts")
        account.platform = platform.id

    def connected_to(self, platform: Account) -> list[Account]:
        return [a for a in self.accounts.values() if a.platform == platform.id]

    def for_key(self, key: str, now: int) -> Account:
        """The key's account, created (id from the key) the first time a new key is seen."""
        owner = self.key_owner.get(key)
        if owner is not None:
            return self.accounts[owner]
        account_id = account_id_for_key(key)
        account = self.accounts.get(account_id)
        if account is None:
            account = self.create(now=now, account_id=account_id, keys=[key])
            account.auto = True
        else:  # pragma: no cover - a 96-bit collision, or an id a test chose on purpose
            self._bind(account, key)
        return account

    def authenticate(self, authorization: str | None, now: int) -> tuple[str, Account]:
        """The key and its account, or Stripe's 401."""
        if not authorization:
            raise errors.no_api_key()
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise errors.no_api_key()
        if key in self.revoked:
            raise errors.expired_api_key(mask_key(key))
        if not is_secret_key(key) or key in self.rejected:
            raise errors.invalid_api_key(mask_key(key))
        return key, self.for_key(key, now)

    def scope(self, key: str, key_account: Account, stripe_account: str | None) -> Scope:
        """Act as `Stripe-Account` when given: the key's own account or one connected to it."""
        livemode = is_live(key)
        if stripe_account is None or stripe_account == key_account.id:
            return Scope(key_account, key, livemode, key_account)
        target = self.accounts.get(stripe_account)
        if not self.connected_to(key_account):
            raise errors.not_a_platform()
        if target is None or target.platform != key_account.id:
            raise errors.account_invalid(mask_key(key), stripe_account)
        return Scope(target, key, livemode, key_account)
