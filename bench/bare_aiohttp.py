"""The floor of an aiohttp server on this machine: read the body, answer 400.

    python bench/bare_aiohttp.py PORT [uvloop]

What the webhook's rejection path is compared with (webhook_bench.py): the same
framework, the same request, none of paykube's work (no signature check, no metrics); with
`uvloop`, on the event loop the webhook runs on."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web


async def refuse(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"error": "bad signature"}, status=400)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> int:
    if sys.argv[2:] == ["uvloop"]:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    app.router.add_post("/webhooks/stripe", refuse)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
                print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
