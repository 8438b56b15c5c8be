"""Accounts and their API keys (HTTP Basic `key_id:key_secret`).

A key id the emulator has not seen (`rzp_test_...`/`rzp_live_...`) is registered on first
use with the secret it came with, in an account of its own whose id derives from the key
id (`account_id_for_key`); after that, another secret is refused. Tests create accounts
explicitly to give one account several keys (rotation)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from paykube_dev.psp_emulator.clock import ALNUM, JsonObject

from . import errors

KEY_ID = re.compile(r"^rzp_(test|live)_[A-Za-z0-9]{6,32}$")
ACCOUNT_ID = re.compile(r"^acc_[A-Za-z0-9]{14}$")


def is_live(key_id: str) -> bool:
    return key_id.startswith("rzp_live_")


def account_id_for_key(key_id: str) -> str:
    """The id of the account a key id not registered beforehand gets: stable per key."""
    digest = int.from_bytes(hashlib.sha256(key_id.encode("utf-8")).digest(), "big")
    chars = []
    for _ in range(14):
        digest, index = divmod(digest, len(ALNUM))
        chars.append(ALNUM[index])
    return "acc_" + "".join(chars)


@dataclass
class Account:
    id: str
    created_at: int
    keys: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    auto: bool = False

    def to_control(self) -> JsonObject:
        return {"id": self.id, "key_ids": sorted(self.keys), "name": self.name,
                "auto": self.auto, "created_at": self.created_at}


@dataclass(frozen=True)
class Scope:
    account: Account
    key_id: str
    livemode: bool


class AccountBook:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.key_owner: dict[str, str] = {}
        self.revoked: set[str] = set()

    def create(
        self, *, now: int, account_id: str | None = None, keys: dict[str, str] | None = None,
        name: str | None = None,
    ) -> Account:
        """A new account; ValueError when the id or a key id is taken or malformed."""
        keys = dict(keys or {})
        if account_id is None:
            if not keys:
                raise ValueError("an account needs an id or at least one key")
            account_id = account_id_for_key(next(iter(keys)))
        if not ACCOUNT_ID.match(account_id):
            raise ValueError(f"account id {account_id!r} is not acc_ + 14 alphanumerics")
        if account_id in self.accounts:
            raise ValueError(f"account {account_id} exists")
        for key_id, secret in keys.items():
            self._check_new_key(key_id, secret)
        account = Account(id=account_id, created_at=now, name=name)
        self.accounts[account_id] = account
        for key_id, secret in keys.items():
            self._bind(account, key_id, secret)
        return account

    def add_key(self, account: Account, key_id: str, secret: str) -> None:
        self._check_new_key(key_id, secret)
        self._bind(account, key_id, secret)

    def _check_new_key(self, key_id: str, secret: str) -> None:
        if not KEY_ID.match(key_id):
            raise ValueError(f"{key_id!r} is not rzp_test_/rzp_live_ + alphanumerics")
        if not secret:
            raise ValueError("a key secret cannot be empty")
        if key_id in self.key_owner:
            raise ValueError(f"{key_id} already belongs to {self.key_owner[key_id]}")

    def _bind(self, account: Account, key_id: str, secret: str) -> None:
        account.keys[key_id] = secret
        self.key_owner[key_id] = account.id

    def for_key(self, key_id: str, secret: str, now: int) -> Account:
        owner = self.key_owner.get(key_id)
        if owner is not None:
            return self.accounts[owner]
        account = self.create(now=now, account_id=account_id_for_key(key_id),
                              keys={key_id: secret})
        account.auto = True
        return account

    def authenticate(self, authorization: str | None, now: int) -> Scope:
        """The key's account, or Razorpay's 401."""
        key_id, secret = _basic(authorization)
        if key_id in self.revoked or not KEY_ID.match(key_id):
            raise errors.unauthenticated("The api key provided is invalid")
        if not secret:
            raise errors.unauthenticated("Authentication failed")
        account = self.for_key(key_id, secret, now)
        if not hmac.compare_digest(account.keys[key_id].encode(), secret.encode()):
            raise errors.unauthenticated("Authentication failed")
        return Scope(account, key_id, is_live(key_id))


def _basic(authorization: str | None) -> tuple[str, str]:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise errors.unauthenticated(
            "Please provide your api key for authentication purposes.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise errors.unauthenticated("Authentication failed") from exc
    key_id, _, secret = decoded.partition(":")
    return key_id, secret
