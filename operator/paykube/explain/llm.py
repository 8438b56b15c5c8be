"""Explanations from an OpenAI-compatible model for provider errors outside the catalog.

The prompt carries only the provider's name, the error's type, code and (normalized)
param, and its message after `redact` (no keys, e-mails, URLs, ids, quoted or metadata
values). Answers are cached per (provider, code, param) in memory and in a persistent
`ExplanationStore` (the MySQL one lives with the mirror; `MemoryExplanationStore` here).
A call is bounded by a short timeout and never retried inline; after a failure the same
key is not asked again for `failure_backoff` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from paykube.explain.catalog import PARAM_FIELDS
from paykube.explain.details import ErrorDetails
from paykube.explain.redact import redact
from paykube.settings import SecretStr

if TYPE_CHECKING:  # the SDK (about 45 MiB once imported) loads only when a model is set
    from openai.types.chat import ChatCompletionMessageParam

    Messages = list[ChatCompletionMessageParam]
else:
    Messages = list

__all__ = [
    "ExplanationKey",
    "ExplanationStore",
    "MemoryExplanationStore",
    "ModelExplainer",
    "build_messages",
    "redact",
]

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 600

SYSTEM_PROMPT = (
    "You explain payment provider API errors to a platform team. The team does not write "
    "code: it declares payments as Kubernetes objects of kind PaymentSession, which an "
    "operator turns into Stripe Checkout Sessions. The spec fields are: amount (integer, "
    "minor currency unit), currency (ISO 4217, lower case), description, lineItems "
    "(name, unitAmount, quantity; their sum equals amount), successUrl, cancelUrl, "
    "customerEmail, expiresAfter (30m to 24h), metadata (at most 20 string keys), cancel, "
    "deletionPolicy, providerRef (the PaymentProvider or ClusterPaymentProvider account whose "
    "API key Secret is used; without it the operator's default account). The "
    "spec is immutable except cancel, so fixing it means recreating the object. Operator "
    "settings include PAYKUBE_STRIPE_API_KEY, PAYKUBE_STRIPE_CREDENTIALS_SECRET, "
    "PAYKUBE_STRIPE_RATE_LIMIT and PAYKUBE_STRIPE_API_BASE. Stripe parameters map to spec "
    "fields as follows: "
    + "; ".join(f"{param} -> {field}" for param, field in PARAM_FIELDS.items())
    + ". You are given the error's type, code and parameter only, never the provider's "
    "message (it may quote another team's data). "
    "Answer in at most three short sentences of plain text, no markdown: say what is "
    "wrong and what to change in the manifest, the Secret or the operator settings. If "
    "nothing there can fix it, say so and say whether retrying helps."
)


class ExplanationKey(NamedTuple):
    """Primary key of a cached explanation. `param` is "" when the error has none, so
    that a SQL primary key (provider, code, param) works without NULLs."""

    provider: str
    code: str
    param: str


@runtime_checkable
class ExplanationStore(Protocol):
    """A persistent cache of explanations (MySQL table `error_explanations(provider, code,
    param, explanation, created_at)`, primary key (provider, code, param)).

    Implementations may be slow or fail: the caller bounds each call with its timeout and
    treats an exception like a miss.
    """

    async def get(self, key: ExplanationKey) -> str | None: ...

    async def put(self, key: ExplanationKey, explanation: str) -> None: ...


class MemoryExplanationStore:
    """An `ExplanationStore` in a dict: for tests, and for running without a database."""

    def __init__(self) -> None:
        self.items: dict[ExplanationKey, str] = {}

    async def get(self, key: ExplanationKey) -> str | None:
        return self.items.get(key)

    async def put(self, key: ExplanationKey, explanation: str) -> None:
        self.items[key] = explanation


def build_messages(details: ErrorDetails) -> tuple[ExplanationKey, Messages]:
    """The cache key and the chat messages for one error; pure (the prompt's only input)."""
    message = redact(details.message)
    key = ExplanationKey(details.provider, details.cache_code(message), details.param or "")
    lines = [
        f"Provider: {details.provider}",
        f"Error type: {details.error_type or 'unknown'}",
        f"Error code: {details.code or 'none'}",
        f"Parameter: {details.param or 'none'}",
    ]
    return key, [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


_SPACES = re.compile(r"\s+")


def _clean_answer(text: str | None) -> str | None:
    if not text:
        return None
    text = _SPACES.sub(" ", text.replace("**", "").replace("`", "")).strip()
    if len(text) > MAX_ANSWER_CHARS:
        text = text[: MAX_ANSWER_CHARS - 1].rstrip() + "…"
    return text or None


class ModelExplainer:
    """Asks an OpenAI-compatible chat endpoint; never raises, returns None on any failure."""

    def __init__(self, base_url: str, model: str,
                 api_key: SecretStr | Callable[[], SecretStr], *, timeout: float = 3.0,
                 cache_ttl: float = 7 * 24 * 3600.0, failure_backoff: float = 60.0,
                 store: ExplanationStore | None = None, max_entries: int = 1024,
                 max_tokens: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._model = model
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._failure_backoff = failure_backoff
        self._store = store
        self._max_entries = max_entries
        self._max_tokens = max_tokens
        self._clock = clock
        self._memory: OrderedDict[ExplanationKey, tuple[float, str]] = OrderedDict()
        self._retry_at: dict[ExplanationKey, float] = {}
        self._inflight: dict[ExplanationKey, asyncio.Task[str | None]] = {}
        # A callable key is read before each request (a rotated key needs no restart).
        self._api_key = api_key if callable(api_key) else (lambda: api_key)
        from openai import AsyncOpenAI  # here, not at the top: see the TYPE_CHECKING import

        # Local endpoints often need no key; the SDK insists on one.
        self._client = AsyncOpenAI(api_key="unused", base_url=base_url, timeout=timeout,
                                   max_retries=0)

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self._client.close()

    def cached(self, details: ErrorDetails) -> str | None:
        """The in-memory answer for `details`, without any I/O."""
        key, _ = build_messages(details)
        return self._from_memory(key)

    async def explain(self, details: ErrorDetails) -> str | None:
        key, messages = build_messages(details)
        found = self._from_memory(key)
        if found is not None:
            return found
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._resolve(key, messages))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: ExplanationKey, done: asyncio.Task[str | None]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]

    async def _resolve(self, key: ExplanationKey, messages: Messages) -> str | None:
        stored = await self._store_get(key)
        if stored:
            self._remember(key, stored)
            return stored
        if self._clock() < self._retry_at.get(key, float("-inf")):
            return None
        answer = await self._ask(key, messages)
        if answer is None:
            self._retry_at[key] = self._clock() + self._failure_backoff
            return None
        self._retry_at.pop(key, None)
        self._remember(key, answer)
        await self._store_put(key, answer)
        return answer

    async def _ask(self, key: ExplanationKey, messages: Messages) -> str | None:
        try:
            self._client.api_key = self._api_key().get() or "unused"
            async with asyncio.timeout(self._timeout):
                response = await self._client.chat.completions.create(
                    model=self._model, messages=messages, temperature=0,
                    max_tokens=self._max_tokens)
        except TimeoutError:
            reason = f"no answer within {self._timeout:g}s"
        except Exception as exc:  # the SDK's errors, or anything odd: never break the caller
            reason = type(exc).__name__
        else:
            choice = response.choices[0] if response.choices else None
            answer = _clean_answer(choice.message.content if choice else None)
            if answer:
                return answer
            reason = "empty answer"
        log.warning("no model explanation for %s error %s (param %s): %s", key.provider,
                    key.code, key.param or "none", reason)
        return None

    def _from_memory(self, key: ExplanationKey) -> str | None:
        entry = self._memory.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        return entry[1]

    def _remember(self, key: ExplanationKey, text: str) -> None:
        self._memory[key] = (self._clock() + self._cache_ttl, text)
        self._memory.move_to_end(key)
        while len(self._memory) > self._max_entries:
            self._memory.popitem(last=False)

    async def _store_get(self, key: ExplanationKey) -> str | None:
        if self._store is None:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                return await self._store.get(key)
        except Exception as exc:  # a cache that fails is a miss
            log.warning("explanation store read failed for %s error %s: %s", key.provider,
                        key.code, type(exc).__name__)
            return None

    async def _store_put(self, key: ExplanationKey, text: str) -> None:
        if self._store is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.put(key, text)
        except Exception as exc:  # the memory cache still has it
            log.warning("explanation store write failed for %s error %s: %s", key.provider,
                        key.code, type(exc).__name__)
