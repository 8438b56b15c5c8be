"""Fixtures for paykube's Razorpay emulator (hack/paykube_dev/razorpay_emulator).

- `razorpay_emulator`: one emulator per session in a background thread, reset before each
  test; for sync code (the `razorpay` SDK, `RazorpayControl`).
- `async_razorpay_emulator`: a fresh emulator in the test's own event loop.
- `razorpay_key`: a key id and secret unique per test (the emulator registers a new key id
  on first use, in an account of its own).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import razorpay

from paykube_dev.razorpay_emulator import (
    AsyncRazorpayControl,
    RazorpayControl,
    RazorpayEmulator,
    RazorpayEmulatorThread,
)


@pytest.fixture(scope="session")
def razorpay_emulator_server() -> Iterator[RazorpayEmulatorThread]:
    with RazorpayEmulatorThread() as emulator:
        yield emulator


@pytest.fixture
def razorpay_emulator(razorpay_emulator_server: RazorpayEmulatorThread) -> RazorpayEmulatorThread:
    razorpay_emulator_server.control.reset()
    return razorpay_emulator_server


@pytest.fixture
def razorpay_control(razorpay_emulator: RazorpayEmulatorThread) -> RazorpayControl:
    return razorpay_emulator.control


@pytest.fixture
def razorpay_key() -> tuple[str, str]:
    return "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)


def razorpay_sdk(base_url: str, key: tuple[str, str]) -> razorpay.Client:
    """The official SDK against an emulator, through its own base-URL setting."""
    return razorpay.Client(auth=key, base_url=base_url)


@pytest.fixture
def razorpay_client(razorpay_emulator: RazorpayEmulatorThread,
                    razorpay_key: tuple[str, str]) -> razorpay.Client:
    return razorpay_sdk(razorpay_emulator.base_url, razorpay_key)


@pytest_asyncio.fixture
async def async_razorpay_emulator() -> AsyncIterator[RazorpayEmulator]:
    async with RazorpayEmulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def async_razorpay_control(
    async_razorpay_emulator: RazorpayEmulator,
) -> AsyncIterator[AsyncRazorpayControl]:
    async with AsyncRazorpayControl(async_razorpay_emulator.base_url) as control:
        yield control
