"""Running the emulator: in the caller's event loop, in a thread, or as a process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from paykube_dev.proc import free_port, port_open, start_process, stop_process, wait_until

from .app import build_app
from .appkeys import DISPATCHER
from .client import EmulatorControl
from .model import Delivery, Event, WebhookEndpoint
from .state import DEFAULT_API_VERSION, DEFAULT_CHECKOUT_URL_BASE, Action, EmulatorState

HACK_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    api_version: str = DEFAULT_API_VERSION
    rate_limit: float | None = None
    hosted_checkout: bool = False
    checkout_url_base: str = DEFAULT_CHECKOUT_URL_BASE
    sweep_interval: float = 0.5
    webhook_retry_delays: tuple[float, ...] = field(default_factory=tuple)


def _configure(
    config: EmulatorConfig | None, webhook_url: str | None, webhook_secret: str | None,
) -> EmulatorConfig:
    config = config or EmulatorConfig()
    if webhook_url is not None:
        config = dataclasses.replace(config, webhook_url=webhook_url)
    if webhook_secret is not None:
        config = dataclasses.replace(config, webhook_secret=webhook_secret)
    return config


class StripeEmulator:
    """The emulator in the running event loop: `async with StripeEmulator() as emu:`.

    `port=0` binds a free loopback port; `base_url` is known after `start()`.
    `hosted_checkout=True` points session URLs at the emulator's own `/c/pay/<id>` page.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.config = _configure(config, webhook_url, webhook_secret)
        endpoints = []
        if self.config.webhook_url:
            if not self.config.webhook_secret:
                raise ValueError("webhook_url needs webhook_secret")
            endpoints.append(WebhookEndpoint(
                url=self.config.webhook_url, secrets=[self.config.webhook_secret],
                retry_delays=list(self.config.webhook_retry_delays),
            ))
        self.state = EmulatorState(
            api_version=self.config.api_version,
            checkout_url_base=self.config.checkout_url_base,
            webhook_endpoints=endpoints, rate_limit=self.config.rate_limit,
            retry_delays=self.config.webhook_retry_delays,
        )
        self.app = build_app(self.state, sweep_interval=self.config.sweep_interval)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        if self.config.hosted_checkout:
            self.state.checkout_url_base = f"{self.base_url}/c/pay/"
        return self.base_url

    async def stop(self) -> None:
        self.state.faults.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def transition(
        self, session_id: str, action: Action, *, wait: bool = True, email: str | None = None,
    ) -> tuple[Event, list[Delivery]]:
        """What the control endpoint does, for tests in the emulator's own loop."""
        event = self.state.transition(session_id, action, email=email)
        return event, await self.app[DISPATCHER].dispatch_now_or_later(event, wait)


class _StartedInWith:
    """`with x:` starts it and stops it again."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmulatorThread(_StartedInWith):
    """The emulator on its own loop in a daemon thread, for sync tests: `with ... as emu:`.

    Talk to it over HTTP (`control`, the Stripe SDK); its `state` belongs to its thread.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.emulator = StripeEmulator(
            config, webhook_url=webhook_url, webhook_secret=webhook_secret,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stripe-emulator", daemon=True)
        self._control: EmulatorControl | None = None

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def control(self) -> EmulatorControl:
        if self._control is None:
            raise RuntimeError("the emulator thread is not running")
        return self._control

    def start(self, timeout: float = 15.0) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("stripe emulator thread did not start")
        if self._error is not None:
            raise RuntimeError("stripe emulator failed to start") from self._error
        self._control = EmulatorControl(self.base_url)
        return self.base_url

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.emulator.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.emulator.stop()

    def stop(self, timeout: float = 15.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)


class EmulatorProcess(_StartedInWith):
    """`python -m paykube_dev.stripe_emulator` as a child process (own process group)."""

    def __init__(
        self, log: Path, *, port: int | None = None, webhook_url: str | None = None,
        webhook_secret: str | None = None, extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.argv = [sys.executable, "-m", "paykube_dev.stripe_emulator", "--port", str(self.port)]
        if webhook_url:
            self.argv += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret or ""]
        self.argv += list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HACK_DIR), env.get("PYTHONPATH")]))
        proc = start_process(self.argv, log=self.log, env=env)
        self.proc = proc
        wait_until(
            lambda: port_open(self.port), timeout=timeout, what="stripe emulator", proc=proc,
            log=self.log,
        )
        return self.base_url

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
