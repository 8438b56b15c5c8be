"""Running an emulator's aiohttp app: in the caller's loop, in a thread, or as a process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web

from paykube_dev.proc import free_port, port_open, start_process, stop_process, wait_until

HACK_DIR = Path(__file__).resolve().parents[2]


class AppServer:
    """An aiohttp app on `host:port` (0: a free port); `base_url` is known after start."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class AsyncServer(Protocol):
    base_url: str

    async def start(self) -> str: ...

    async def stop(self) -> None: ...


class StartedInWith:
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


class LoopThread(StartedInWith):
    """An async server on its own loop in a daemon thread, for sync tests."""

    def __init__(self, server: AsyncServer, name: str) -> None:
        self.server = server
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self, timeout: float = 15.0) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.name} thread did not start")
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed to start") from self._error
        return self.base_url

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)


class ModuleProcess(StartedInWith):
    """`python -m <module> --port N ...` as a child process (own process group)."""

    def __init__(
        self, module: str, log: Path, *, port: int | None = None, args: Sequence[str] = (),
        what: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.what = what or module
        self.argv = [sys.executable, "-m", module, "--port", str(self.port), *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HACK_DIR), env.get("PYTHONPATH")]))
        proc = start_process(self.argv, log=self.log, env=env)
        self.proc = proc
        wait_until(
            lambda: port_open(self.port), timeout=timeout, what=self.what, proc=proc,
            log=self.log,
        )
        return self.base_url

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
