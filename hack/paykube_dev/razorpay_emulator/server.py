"""Running the Razorpay emulator: in the caller's loop, in a thread, or as a process
(the shared runners of `paykube_dev.psp_emulator.server`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from paykube_dev.psp_emulator.delivery import Delivery
from paykube_dev.psp_emulator.server import AppServer, LoopThread, ModuleProcess

from .app import build_app
from .appkeys import DISPATCHER
from .client import RazorpayControl
from .model import Event
from .state import DEFAULT_SHORT_URL_BASE, Action, RazorpayState


@dataclass(frozen=True)
class RazorpayConfig:
    host: str = "127.0.0.1"
    port: int = 0
    short_url_base: str = DEFAULT_SHORT_URL_BASE
    hosted_links: bool = False  # short URLs point at the emulator's own /i/<code> page
    sweep_interval: float = 0.5
    webhook_retry_delays: tuple[float, ...] = field(default_factory=tuple)


class RazorpayEmulator:
    """The emulator in the running event loop: `async with RazorpayEmulator() as emu:`."""

    def __init__(self, config: RazorpayConfig | None = None) -> None:
        self.config = config or RazorpayConfig()
        self.state = RazorpayState(short_url_base=self.config.short_url_base,
                                   retry_delays=self.config.webhook_retry_delays)
        self.app = build_app(self.state, sweep_interval=self.config.sweep_interval)
        self._server = AppServer(self.app, self.config.host, self.config.port)
        self.base_url = ""

    async def start(self) -> str:
        self.base_url = await self._server.start()
        if self.config.hosted_links:
            self.state.short_url_base = f"{self.base_url}/i/"
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
        self, link_id: str, action: Action, *, amount: int | None = None, wait: bool = True,
    ) -> tuple[Event, list[Delivery]]:
        """What the control endpoint does, for tests in the emulator's own loop."""
        event = self.state.transition(link_id, action, amount=amount)
        return event, await self.app[DISPATCHER].dispatch_now_or_later(event, wait)


class RazorpayEmulatorThread(LoopThread):
    """The emulator on its own loop in a daemon thread, for sync tests."""

    def __init__(self, config: RazorpayConfig | None = None) -> None:
        self.emulator = RazorpayEmulator(config)
        super().__init__(self.emulator, "razorpay-emulator")
        self._control: RazorpayControl | None = None

    @property
    def control(self) -> RazorpayControl:
        if self._control is None:
            raise RuntimeError("the emulator thread is not running")
        return self._control

    def start(self, timeout: float = 15.0) -> str:
        super().start(timeout)
        self._control = RazorpayControl(self.base_url)
        return self.base_url

    def stop(self, timeout: float = 15.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        super().stop(timeout)


class RazorpayEmulatorProcess(ModuleProcess):
    """`python -m paykube_dev.razorpay_emulator` as a child process (own process group)."""

    def __init__(
        self, log: Path, *, port: int | None = None, extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__("paykube_dev.razorpay_emulator", log, port=port, args=extra_args,
                         what="razorpay emulator")
