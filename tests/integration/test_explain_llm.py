"""Model explanations against a local OpenAI-compatible server (aiohttp, loopback).

The server implements POST /v1/chat/completions, records every request, and runs in one
of three modes: `answer`, `slow` (holds the request longer than the client's timeout) and
`down` (stopped; the port refuses connections).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from paykube.errors import ErrorCode, ProviderError
from paykube.explain import (
    Explainer,
    ExplanationKey,
    MemoryExplanationStore,
    ModelExplainer,
)
from paykube.mirror.explanations import MySQLExplanationStore
from paykube.mirror.migrate import migrate
from paykube.mirror.schema import error_explanations
from paykube.mirror.store import make_engine
from paykube.secrets.files import SecretSetting
from paykube.settings import SecretStr
from paykube_dev.services import MariaDB
from tests.plugins.openai_server import ANSWER, FakeOpenAI

pytestmark = pytest.mark.integration

MODEL_KEY = "sk-model-SEKRET-api-key-123456"
TIMEOUT = 0.5

# A message crafted to carry every kind of value the prompt must not contain.
EMAIL = "jane.doe@example.com"
URL = "https://shop.example.com/thanks?order=991"
STRIPE_KEY = "sk_live_51HxSEKRETkey000111222"
WHSEC = "whsec_SEKRETsigning333444"
PUBLISHABLE = "pk_test_TYooMQauvdEDq54NiTphI7jx"
UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
METADATA_VALUE = "Jane Doe, 12 Main Street"
CARD = "4000 0566 5566 5556"
LOG_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
CRAFTED = (f"Invalid value for metadata[customer_address]: '{METADATA_VALUE}'. The customer "
           f"{EMAIL} returning to {URL} with key {STRIPE_KEY} (signing {WHSEC}, publishable "
           f"{PUBLISHABLE}) for object {UID} paid with card {CARD}.")
PRIVATE_VALUES = [EMAIL, "jane.doe", URL, "shop.example.com", STRIPE_KEY, "SEKRETkey", WHSEC,
                  "SEKRETsigning", PUBLISHABLE, "TYooMQ", UID, METADATA_VALUE, "Jane Doe",
                  "Main Street", CARD, "5556", "customer_address", MODEL_KEY]


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryExplanationStore:
    return MemoryExplanationStore()


@pytest.fixture
async def explainer(server: FakeOpenAI, clock: Clock,
                    store: MemoryExplanationStore) -> AsyncIterator[Explainer]:
    model = ModelExplainer(server.base_url, "paykube-test-model", SecretStr(MODEL_KEY),
                           timeout=TIMEOUT, failure_backoff=30.0, store=store, clock=clock)
    explainer = Explainer(model=model)
    try:
        yield explainer
    finally:
        await explainer.aclose()


def new_error(code: str = "checkout_flux_capacitor_misaligned", message: str = "Something new.",
              param: str | None = "customer_email") -> ProviderError:
    return ProviderError(message, code=ErrorCode.PROVIDER_REJECTED, provider_code=code,
                         param=param, http_status=400, error_type="invalid_request_error")


def paykube_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("paykube")]


async def test_model_answer_lands_and_is_cached(explainer: Explainer, server: FakeOpenAI,
                                                store: MemoryExplanationStore) -> None:
    error = new_error()
    assert explainer.explain_now(error) is None  # instant: not in the catalog
    assert explainer.needs_model(error)

    assert await explainer.explain_later(error) == ANSWER
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["body"]["model"] == "paykube-test-model"
    assert request["headers"]["Authorization"] == f"Bearer {MODEL_KEY}"
    assert store.items == {ExplanationKey("stripe", "checkout_flux_capacitor_misaligned",
                                          "customer_email"): ANSWER}

    # Served from memory: no second request, and explain_now has it too.
    assert await explainer.explain_later(error) == ANSWER
    assert await explainer.explain_later(new_error(message="Other wording, same code.")) == ANSWER
    assert explainer.explain_now(error) == ANSWER
    assert len(server.requests) == 1


async def test_concurrent_requests_for_one_key_ask_once(explainer: Explainer,
                                                        server: FakeOpenAI) -> None:
    results = await asyncio.gather(*(explainer.explain_later(new_error()) for _ in range(5)))
    assert results == [ANSWER] * 5
    assert len(server.requests) == 1


async def test_explanation_arrives_in_the_background(explainer: Explainer,
                                                     server: FakeOpenAI) -> None:
    patched: list[str] = []

    async def patch_status(text: str) -> None:
        patched.append(text)

    error = new_error()
    started = time.monotonic()
    assert explainer.explain_now(error) is None
    task = explainer.explain_in_background(error, patch_status)
    assert time.monotonic() - started < 0.05  # the caller did not wait for the model
    assert task is not None
    assert patched == []
    await task
    assert patched == [ANSWER]
    # A catalog hit needs no background work.
    known = new_error("url_invalid", "Not a valid URL", "success_url")
    assert explainer.explain_in_background(known, patch_status) is None


async def test_slow_model_returns_none_promptly_then_fills_later(
        explainer: Explainer, server: FakeOpenAI, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    server.mode = "slow"
    error = new_error()
    started = time.monotonic()
    assert await explainer.explain_later(error) is None
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 0.5, elapsed
    assert len(server.requests) == 1
    warnings = paykube_warnings(caplog)
    assert len(warnings) == 1
    assert "no answer within 0.5s" in warnings[0]

    # Within the failure backoff the model is not asked again.
    server.mode = "answer"
    assert await explainer.explain_later(error) is None
    assert len(server.requests) == 1

    clock.now += 31
    assert await explainer.explain_later(error) == ANSWER
    assert len(server.requests) == 2


async def test_model_down_then_back(explainer: Explainer, server: FakeOpenAI,
                                    clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    await server.go_down()
    error = new_error()
    started = time.monotonic()
    assert await explainer.explain_later(error) is None
    assert time.monotonic() - started < TIMEOUT + 0.5
    warnings = paykube_warnings(caplog)
    assert len(warnings) == 1
    assert "APIConnectionError" in warnings[0]

    await server.start()
    clock.now += 31
    assert await explainer.explain_later(error) == ANSWER
    assert len(server.requests) == 1


async def test_prompt_carries_no_secret_or_personal_value(
        explainer: Explainer, server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "paykube"):
        caplog.set_level(logging.DEBUG, logger=name)
    error = new_error("parameter_weird", CRAFTED, "metadata[customer_address]")
    assert await explainer.explain_later(error) == ANSWER

    raw = server.requests[0]["raw"]
    body = server.requests[0]["body"]
    for value in PRIVATE_VALUES:
        assert value not in raw, value
    user = body["messages"][-1]["content"]
    assert "Error code: parameter_weird" in user
    assert "Parameter: metadata[*]" in user
    assert "Error type: invalid_request_error" in user
    assert "Provider: stripe" in user
    # Nothing private in any log line either, the model's API key included.
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert records
    for record in records:
        # The message and every extra field; not the record's own bookkeeping (times,
        # thread ids), whose digits could contain a short value by chance.
        extra = {k: v for k, v in vars(record).items() if k not in LOG_RECORD_FIELDS}
        text = f"{record.getMessage()} {extra!r}"
        for value in PRIVATE_VALUES:
            assert value not in text, (record.name, value)


async def test_persistent_store_answers_before_the_model(
        server: FakeOpenAI, clock: Clock) -> None:
    store = MemoryExplanationStore()
    key = ExplanationKey("stripe", "checkout_flux_capacitor_misaligned", "customer_email")
    store.items[key] = "From the database."
    model = ModelExplainer(server.base_url, "m", SecretStr(MODEL_KEY), timeout=TIMEOUT,
                           store=store, clock=clock)
    explainer = Explainer(model=model)
    try:
        assert await explainer.explain_later(new_error()) == "From the database."
        assert server.requests == []
    finally:
        await explainer.aclose()


class BrokenStore:
    async def get(self, key: ExplanationKey) -> str | None:
        raise ConnectionError("database down")

    async def put(self, key: ExplanationKey, explanation: str) -> None:
        raise ConnectionError("database down")


async def test_a_failing_store_does_not_stop_explanations(
        server: FakeOpenAI, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    model = ModelExplainer(server.base_url, "m", SecretStr(MODEL_KEY), timeout=TIMEOUT,
                           store=BrokenStore(), clock=clock)
    explainer = Explainer(model=model)
    try:
        assert await explainer.explain_later(new_error()) == ANSWER
        assert await explainer.explain_later(new_error()) == ANSWER  # memory
        assert len(server.requests) == 1
        assert len(paykube_warnings(caplog)) == 2  # one read, one write
    finally:
        await explainer.aclose()


async def test_catalog_errors_never_reach_the_model(explainer: Explainer,
                                                    server: FakeOpenAI) -> None:
    known = new_error("parameter_invalid_integer", "too soon", "expires_at")
    text = await explainer.explain_later(known)
    assert text is not None
    assert "spec.expiresAfter" in text
    info_only = ProviderError("x", code=ErrorCode.CREDENTIALS_MISSING)  # not the provider's
    assert await explainer.explain_later(info_only) is not None
    assert server.requests == []


async def test_model_explanation_is_stored_in_mariadb_and_served_with_the_model_down(
        server: FakeOpenAI, clock: Clock, mariadb: MariaDB) -> None:
    url = mariadb.create_database(f"explain_{uuid.uuid4().hex[:10]}")
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url)
    try:
        first = Explainer(model=ModelExplainer(
            server.base_url, "m", SecretStr(MODEL_KEY), timeout=TIMEOUT,
            store=MySQLExplanationStore(engine), clock=clock))
        try:
            assert await first.explain_later(new_error()) == ANSWER
        finally:
            await first.aclose()
        assert len(server.requests) == 1
        with engine.connect() as conn:
            rows = conn.execute(select(
                error_explanations.c.provider, error_explanations.c.code,
                error_explanations.c.param, error_explanations.c.explanation)).all()
        assert [tuple(r) for r in rows] == [
            ("stripe", "checkout_flux_capacitor_misaligned", "customer_email", ANSWER)]

        # Another replica (or a restart): empty memory, the model down. The database answers.
        await server.go_down()
        fresh = Explainer(model=ModelExplainer(
            server.base_url, "m", SecretStr(MODEL_KEY), timeout=TIMEOUT,
            store=MySQLExplanationStore(engine), clock=clock))
        try:
            assert fresh.explain_now(new_error()) is None  # nothing in memory yet
            assert await fresh.explain_later(new_error(message="Other words.")) == ANSWER
            assert fresh.explain_now(new_error()) == ANSWER  # now remembered
            # A code the database does not hold: the model is down, so no explanation.
            assert await fresh.explain_later(new_error("checkout_other_new_code")) is None
        finally:
            await fresh.aclose()
        assert len(server.requests) == 1

        # A later explanation of the same key replaces the stored one (no duplicate row).
        await MySQLExplanationStore(engine).put(
            ExplanationKey("stripe", "checkout_flux_capacitor_misaligned", "customer_email"),
            "Newer wording.")
        with engine.connect() as conn:
            assert conn.execute(select(error_explanations.c.explanation)).scalars().all() == [
                "Newer wording."]
    finally:
        engine.dispose()


async def test_the_model_key_from_a_file_is_read_again_after_the_ttl(
        server: FakeOpenAI, clock: Clock, tmp_path: Path) -> None:
    key_file = tmp_path / "explainApiKey"
    key_file.write_text("sk-model-file-one\n")
    api_key = SecretSetting(SecretStr(""), str(key_file), ttl=60, clock=clock)
    explainer = Explainer(model=ModelExplainer(server.base_url, "m", api_key, timeout=TIMEOUT,
                                               clock=clock))
    try:
        assert await explainer.explain_later(new_error("code_one")) == ANSWER
        key_file.write_text("sk-model-file-two")
        clock.now += 61  # the mounted Secret changed and the TTL passed: no restart
        assert await explainer.explain_later(new_error("code_two")) == ANSWER
    finally:
        await explainer.aclose()
    assert [r["headers"].get("Authorization") for r in server.requests] == [
        "Bearer sk-model-file-one", "Bearer sk-model-file-two"]
