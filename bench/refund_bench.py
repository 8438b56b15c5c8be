"""Refund creates per second through the provider adapters, next to session creates in the
same run, and what reading every refund of a payment costs as its refunds grow.

    python bench/refund_bench.py --payments 400 --concurrency 16 --listed 250

Each PSP's emulator runs as its own process. For each of Stripe and Razorpay: N sessions
are created through the adapter (timed: the reference), paid by the emulator's control
plane (not timed), then refunded once each through the adapter (timed). The ratio refund
creates/s ÷ session creates/s is printed per PSP: both are one call of the same adapter,
so it shows what a refund costs beyond a create, on whatever load the machine has. Then a
payment gets `--listed` refunds (Dashboard refunds, by control) and `list_refunds` reads
them all (Stripe: pages of 100 by cursor; Razorpay: count/skip), timed against one
`get_refund` in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paykube.api.types import ObjectRef, PaymentSessionSpec
from paykube.providers.base import AccountCredentials, CreateRefund, CreateSession
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.razorpay import RazorpayProvider
from paykube.providers.stripe import StripeProvider
from paykube.settings import SecretStr
from paykube_dev.razorpay_emulator import AsyncRazorpayControl, RazorpayEmulatorProcess
from paykube_dev.razorpay_emulator import account_id_for_key as razorpay_account
from paykube_dev.stripe_emulator import AsyncEmulatorControl, EmulatorProcess

SPEC = PaymentSessionSpec.from_dict({
    "amount": 250000, "currency": "eur", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "description": "Gift card",
    "metadata": {"order": "1002"},
})


@dataclass
class Psp:
    name: str
    provider: Any
    account: AccountCredentials
    pay: Callable[[str], Awaitable[None]]
    outside_refund: Callable[[str], Awaitable[None]]


@dataclass
class Figures:
    name: str
    sessions_per_s: float
    refunds_per_s: float
    list_ms: float
    get_ms: float
    listed: int


async def gather_limited(calls: list[Callable[[], Awaitable[Any]]],
                         concurrency: int) -> tuple[list[Any], float]:
    """Run the calls `concurrency` at a time; (their results in order, seconds taken)."""
    results: list[Any] = [None] * len(calls)
    queue = iter(enumerate(calls))

    async def worker() -> None:
        for index, call in queue:
            results[index] = await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - started


async def measure(psp: Psp, payments: int, concurrency: int, listed: int) -> Figures:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    refs = [ObjectRef("bench", f"order-{i}", str(uuid.uuid4())) for i in range(payments)]
    sessions, session_s = await gather_limited(
        [functools.partial(psp.provider.create_session, CreateSession(ref, SPEC, expires),
                           psp.account) for ref in refs],
        concurrency)
    for session in sessions:
        await psp.pay(session.snapshot.session_id)
    payment_ids = [(await psp.provider.get_session(s.snapshot.session_id, psp.account)
                    ).snapshot.payment_intent_id for s in sessions]
    requests = [CreateRefund(ObjectRef("bench", f"refund-{i}", str(uuid.uuid4())), ref,
                             payment_id, 1000, "eur")
                for i, (ref, payment_id) in enumerate(zip(refs, payment_ids, strict=True))]
    refunds, refund_s = await gather_limited(
        [functools.partial(psp.provider.create_refund, request, psp.account)
         for request in requests],
        concurrency)
    many = payment_ids[0]
    for _ in range(listed - 1):
        await psp.outside_refund(many)
    list_times, get_times = [], []
    for _ in range(5):
        started = time.perf_counter()
        found = await psp.provider.list_refunds(many, psp.account)
        list_times.append(time.perf_counter() - started)
        assert len(found) == listed, (len(found), listed)
        started = time.perf_counter()
        await psp.provider.get_refund(refunds[0].refund_id, psp.account)
        get_times.append(time.perf_counter() - started)
    return Figures(psp.name, payments / session_s, payments / refund_s,
                   1000 * statistics.median(list_times), 1000 * statistics.median(get_times),
                   listed)


async def stripe_run(tmp: Path, args: argparse.Namespace) -> Figures:
    with EmulatorProcess(tmp / "stripe-emulator.log") as emulator:
        provider = StripeProvider(api_base=emulator.base_url,
                                  limiter=RateLimiter(rate=1e9, burst=10**9), attempts=1)
        account = AccountCredentials(SecretStr("sk_test_bench_" + secrets.token_hex(6)))
        async with AsyncEmulatorControl(emulator.base_url) as control:
            async def pay(session_id: str) -> None:
                await control.transition(session_id, "paid", wait=False)

            async def outside(payment_id: str) -> None:
                await control.dashboard_refund(payment_id, 100, wait=False)

            try:
                return await measure(Psp("stripe", provider, account, pay, outside),
                                     args.payments, args.concurrency, args.listed)
            finally:
                await provider.aclose()


async def razorpay_run(tmp: Path, args: argparse.Namespace) -> Figures:
    with RazorpayEmulatorProcess(tmp / "razorpay-emulator.log") as emulator:
        provider = RazorpayProvider(api_base=emulator.base_url,
                                    limiter=RateLimiter(rate=1e9, burst=10**9), attempts=1)
        key_id, secret = "rzp_test_" + secrets.token_hex(7), secrets.token_urlsafe(18)
        account = AccountCredentials(SecretStr(f"{key_id}:{secret}"),
                                     account_id=razorpay_account(key_id))
        async with AsyncRazorpayControl(emulator.base_url) as control:
            async def pay(link_id: str) -> None:
                await control.transition(link_id, "pay", wait=False)

            async def outside(payment_id: str) -> None:
                await control.dashboard_refund(payment_id, 100, wait=False)

            try:
                return await measure(Psp("razorpay", provider, account, pay, outside),
                                     args.payments, args.concurrency, args.listed)
            finally:
                await provider.aclose()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="paykube-bench-") as tmp:
        results = [await stripe_run(Path(tmp), args), await razorpay_run(Path(tmp), args)]
    print(f"{'psp':<9} {'sessions/s':>10} {'refunds/s':>10} {'refunds÷sessions':>17} "
          f"{'list ms':>8} {'get ms':>7} {'list÷get':>9} (list of {args.listed})")
    for r in results:
        print(f"{r.name:<9} {r.sessions_per_s:>10.1f} {r.refunds_per_s:>10.1f} "
              f"{r.refunds_per_s / r.sessions_per_s:>17.2f} {r.list_ms:>8.1f} "
              f"{r.get_ms:>7.1f} {r.list_ms / r.get_ms:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--listed", type=int, default=250)
    args = parser.parse_args()
    if args.listed < 1 or args.payments < 1:
        parser.error("--payments and --listed must be at least 1")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
