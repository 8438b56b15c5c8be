"""Fixtures for paykube's Stripe emulator (hack/paykube_dev/stripe_emulator).

- `stripe_emulator`: one emulator per session on a loopback port in a background thread,
  reset before each test; for sync code (the `stripe` SDK, `EmulatorControl`).
- `async_stripe_emulator`: a fresh emulator in the test's own event loop.
- `stripe_api_key` is unique per test, and each new key gets an account of its own
  (`account_id_for_key`), so tests do not see each other's sessions even without the reset;
  `stripe_control.create_account(...)` makes accounts with several keys or Connect links.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import stripe

from paykube_dev.stripe_emulator import (
    AsyncEmulatorControl,
    EmulatorControl,
    EmulatorThread,
    StripeEmulator,
)


@pytest.fixture(scope="session")
def stripe_emulator_server() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        yield emulator


@pytest.fixture
def stripe_emulator(stripe_emulator_server: EmulatorThread) -> EmulatorThread:
    stripe_emulator_server.control.reset()
    return stripe_emulator_server


@pytest.fixture
def stripe_control(stripe_emulator: EmulatorThread) -> EmulatorControl:
    return stripe_emulator.control


@pytest.fixture
def stripe_api_key() -> str:
    return "sk_test_" + secrets.token_hex(16)


def stripe_sdk(base_url: str, api_key: str, *, retries: int = 0) -> stripe.StripeClient:
    """The official SDK against an emulator (or stripe-mock) at `base_url`."""
    return stripe.StripeClient(
        api_key, base_addresses={"api": base_url}, max_network_retries=retries,
    )


@pytest.fixture
def stripe_client(stripe_emulator: EmulatorThread, stripe_api_key: str) -> stripe.StripeClient:
    """The official SDK against the emulator, without its automatic retries."""
    return stripe_sdk(stripe_emulator.base_url, stripe_api_key)


@pytest_asyncio.fixture
async def async_stripe_emulator() -> AsyncIterator[StripeEmulator]:
    async with StripeEmulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def async_stripe_control(
    async_stripe_emulator: StripeEmulator,
) -> AsyncIterator[AsyncEmulatorControl]:
    async with AsyncEmulatorControl(async_stripe_emulator.base_url) as control:
        yield control
