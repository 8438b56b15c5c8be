"""`python -m paykube_dev.stripe_emulator --port N [--webhook-url URL --webhook-secret S]`.

Prints the base URL on one line once it listens; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .server import EmulatorConfig, StripeEmulator
from .state import DEFAULT_API_VERSION


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    parser = argparse.ArgumentParser(prog="python -m paykube_dev.stripe_emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--webhook-url", help="deliver events here")
    parser.add_argument("--webhook-secret", help="signing secret (whsec_...) for --webhook-url")
    parser.add_argument(
        "--webhook-retry", type=float, action="append", default=[], metavar="SECONDS",
        help="retry a failed delivery after these delays (repeatable)",
    )
    parser.add_argument("--api-version", default=DEFAULT_API_VERSION)
    parser.add_argument("--rate-limit", type=float, help="requests per second per API key")
    parser.add_argument(
        "--hosted-checkout", action="store_true",
        help="session URLs point at the emulator's own /c/pay/<id> page",
    )
    args = parser.parse_args(argv)
    if args.webhook_url and not args.webhook_secret:
        parser.error("--webhook-url needs --webhook-secret")
    return EmulatorConfig(
        host=args.host, port=args.port, webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret, api_version=args.api_version,
        rate_limit=args.rate_limit, hosted_checkout=args.hosted_checkout,
        webhook_retry_delays=tuple(args.webhook_retry),
    )


async def serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with StripeEmulator(config) as emulator:
        print(emulator.base_url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
