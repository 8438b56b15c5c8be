"""`python -m paykube_dev.razorpay_emulator --port N`: prints the base URL once it listens;
stops on SIGTERM or SIGINT. Accounts and webhooks are set up through `/_emulator/...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .server import RazorpayConfig, RazorpayEmulator


def parse_args(argv: list[str] | None = None) -> RazorpayConfig:
    parser = argparse.ArgumentParser(prog="python -m paykube_dev.razorpay_emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--short-url-base", default="https://rzp.io/i/")
    parser.add_argument(
        "--webhook-retry", type=float, action="append", default=[], metavar="SECONDS",
        help="retry a failed delivery after these delays (repeatable)",
    )
    parser.add_argument(
        "--hosted-links", action="store_true",
        help="short URLs point at the emulator's own /i/<code> payment page",
    )
    args = parser.parse_args(argv)
    return RazorpayConfig(host=args.host, port=args.port, short_url_base=args.short_url_base,
                          webhook_retry_delays=tuple(args.webhook_retry),
                          hosted_links=args.hosted_links)


async def serve(config: RazorpayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with RazorpayEmulator(config) as emulator:
        print(emulator.base_url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
