"""Running the emulator: in the caller's event loop, in a thread, or as a process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from paykube_dev.psp_emulator.server import AppServer, LoopThread, ModuleProcess

from .app import build_app
from .appkeys import DISPATCHER
from .client import EmulatorControl
from .model import Delivery, Event, WebhookEndpoint
from .state import DEFAULT_API_VERSION, DEFAULT_CHECKOUT_URL_BASE, Action, EmulatorState


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
        self._server = AppServer(self.app, self.config.host, self.config.port)
        self.base_url = ""

    async def start(self) -> str:
        self.base_url = await self._server.start()
        if self.config.hosted_checkout:
            self.state.checkout_url_base = f"{self.base_url}/c/pay/"
        return self.base_url

    async def stop(self) -> None:
        self.state.faults.release()
        await self._server.stop()

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


class EmulatorThread(LoopThread):
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
        super().__init__(self.emulator, "stripe-emulator")
        self._control: EmulatorControl | None = None

    @property
    def control(self) -> EmulatorControl:
        if self._control is None:
            raise RuntimeError("the emulator thread is not running")
        return self._control

    def start(self, timeout: float = 15.0) -> str:
        super().start(timeout)
        self._control = EmulatorControl(self.base_url)
        return self.base_url

    def stop(self, timeout: float = 15.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        super().stop(timeout)


class EmulatorProcess(ModuleProcess):
    """`python -m paykube_dev.stripe_emulator` as a child process (own process group)."""

    def __init__(
        self, log: Path, *, port: int | None = None, webhook_url: str | None = None,
        webhook_secret: str | None = None, extra_args: tuple[str, ...] = (),
    ) -> None:
        args: list[str] = []
        if webhook_url:
            args += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret or ""]
        super().__init__("paykube_dev.stripe_emulator", log, port=port,
                         args=[*args, *extra_args], what="stripe emulator")
