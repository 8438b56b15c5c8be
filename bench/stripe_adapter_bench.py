"""Checkout Session creates per second and CPU per create, through the Stripe adapter alone.

    python bench/stripe_adapter_bench.py --creates 2000 --concurrency 16 \
        [--baseline /tmp/old_stripe_provider.py]

The Stripe emulator runs as its own process, so the CPU counted (this process's user +
system time) is the adapter's: the SDK or the hand-written HTTP code, httpx, and paykube's
validation and mapping. The rate limiter is out of the way (a bucket far deeper than the
run). `--baseline` loads another version of `paykube/providers/stripe.py` from a file (the
one before a change) and measures it in the same run, against the same emulator, in
alternating rounds; its figures are printed next to the current module's, as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import paykube.providers.stripe as current
from bench.common import process_stats
from paykube.api.types import ObjectRef, PaymentSessionSpec
from paykube.providers.base import CreateSession
from paykube.providers.ratelimit import RateLimiter
from paykube.settings import SecretStr
from paykube_dev.stripe_emulator import EmulatorProcess

KEY = SecretStr("sk_test_bench_adapter")
SPEC = PaymentSessionSpec.from_dict({
    "amount": 5497, "currency": "eur", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "customerEmail": "jane@example.com",
    "lineItems": [{"name": "Shirt", "unitAmount": 1999, "quantity": 2},
                  {"name": "Stickers", "unitAmount": 1499, "quantity": 1}],
    "metadata": {"order": "1002"},
})


@dataclass
class Result:
    name: str
    creates: int
    seconds: float
    cpu: float
    emulator_cpu: float

    @property
    def rate(self) -> float:
        return self.creates / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.creates

    @property
    def emulator_cpu_ms(self) -> float:
        return 1000 * self.emulator_cpu / self.creates


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("paykube.providers._baseline_stripe", path)
    assert spec, path
    assert spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(module: ModuleType, name: str, emulator: EmulatorProcess, creates: int,
              concurrency: int) -> Result:
    assert emulator.proc
    pid = emulator.proc.pid
    base_url = emulator.base_url
    provider: Any = module.StripeProvider(
        api_base=base_url, limiter=RateLimiter(rate=1e9, burst=10**9), attempts=1)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

    async def one() -> None:
        ref = ObjectRef("bench", "order", str(uuid.uuid4()))
        await provider.create_session(CreateSession(ref, SPEC, expires), KEY)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    try:
        await asyncio.gather(*(one() for _ in range(concurrency)))  # connections, imports
        share, extra = divmod(creates, concurrency)
        emulator_cpu = process_stats(pid).cpu_seconds
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))
        return Result(name, creates, time.perf_counter() - started, time.process_time() - cpu,
                      process_stats(pid).cpu_seconds - emulator_cpu)
    finally:
        await provider.aclose()


def merged(results: list[Result]) -> Result:
    return Result(results[0].name, sum(r.creates for r in results),
                  sum(r.seconds for r in results), sum(r.cpu for r in results),
                  sum(r.emulator_cpu for r in results))


async def main_async(args: argparse.Namespace) -> None:
    modules: list[tuple[str, ModuleType]] = [("current", current)]
    if args.baseline:
        modules.insert(0, ("baseline", load(args.baseline)))
    per_round = max(1, args.creates // args.rounds)
    with tempfile.TemporaryDirectory(prefix="paykube-bench-") as tmp, \
            EmulatorProcess(Path(tmp) / "stripe-emulator.log") as emulator:
        runs: dict[str, list[Result]] = {name: [] for name, _ in modules}
        for _ in range(args.rounds):  # alternating, so that drift hits both alike
            for name, module in modules:
                runs[name].append(await run(module, name, emulator, per_round,
                                            args.concurrency))
    results = [merged(r) for r in runs.values()]
    print(f"{'adapter':<10} {'creates':>8} {'creates/s':>10} {'CPU ms/create':>14} "
          f"{'emulator CPU ms/create':>23}")
    for r in results:
        print(f"{r.name:<10} {r.creates:>8} {r.rate:>10.1f} {r.cpu_ms:>14.2f} "
              f"{r.emulator_cpu_ms:>23.2f}")
    if len(results) == 2:
        old, new = results
        print(f"current/baseline: creates/s x{new.rate / old.rate:.2f}, "
              f"CPU per create x{new.cpu_ms / old.cpu_ms:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--baseline", type=Path, help="an older providers/stripe.py")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
