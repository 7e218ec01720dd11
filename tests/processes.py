"""Extra real processes for multi-process tests: more app servers and a private Redis.

    async with RedisServer() as redis, ServerProcess({"DATABASE_URL": url,
                                                      "BROADCAST_URL": redis.url}) as server:
        ...  # server.base_url serves the app from its own process

Both wait until the process answers before returning, and fail with the tail of its output
when it dies or never answers.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Processes still running when pytest exits (a test that never stopped them) are killed then,
# so that no server outlives the suite and keeps its port.
_running: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_running):
        if process.poll() is None:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


async def _terminate(process: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit code.

    Waits in a thread, so that the event loop (and the in-process server) keeps running.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, grace)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
    _running.discard(process)
    assert process.returncode is not None
    return process.returncode


class ServerProcess:
    """`python server.py` in a process of its own, on a free loopback port.

    `env` overrides os.environ for the process and must name DATABASE_URL, so that a test
    never serves (and migrates) the developer's own crm.sqlite3 by accident.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if "DATABASE_URL" not in env:
            raise ValueError("ServerProcess needs DATABASE_URL in env")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",  # so that a failure message shows the latest output
        }
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        fd, name = tempfile.mkstemp(prefix="crm-server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    def output(self, lines: int = 40) -> str:
        """The last lines the process wrote (stdout and stderr together)."""
        return _tail(self.log_path, lines)

    async def start(self) -> Self:
        """Start the process and wait until GET /healthz answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            # Popen waits for the exec: off the event loop, like every wait here.
            self.process = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "server.py"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _running.add(self.process)
        await self._wait_healthy()
        return self

    async def _wait_healthy(self) -> None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2, trust_env=False) as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    _running.discard(self.process)
                    pytest.fail(
                        f"server.py exited with {code} before answering /healthz "
                        f"(full log: {self.log_path}):\n{self.output()}"
                    )
                try:
                    response = await http.get("/healthz")
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if loop.time() > deadline:
                    await self.stop()
                    pytest.fail(
                        f"server.py did not answer /healthz within {self.startup_timeout} s "
                        f"(full log: {self.log_path}):\n{self.output()}"
                    )
                await asyncio.sleep(0.1)

    async def stop(self) -> int | None:
        """SIGTERM (graceful shutdown), SIGKILL after stop_timeout; the exit code."""
        if self.process is not None:
            self.returncode = await _terminate(self.process, self.stop_timeout)
        return self.returncode

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        self.log_path.unlink(missing_ok=True)


class RedisServer:
    """A private, throwaway redis-server in the foreground, on a free loopback port.

    `stop()` and `start()` again keep the port, so that clients can reconnect to the same URL.
    """

    def __init__(self, *, port: int | None = None, startup_timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (it is on PATH in CI)"
            if os.environ.get("CI"):
                pytest.fail(message)  # under CI a missing Redis is a failure, never a skip
            pytest.skip(message)
        self.binary = binary
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="crm-redis-")
        self.log_path = Path(self._dir.name) / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    async def start(self) -> Self:
        """Start redis-server (again, on the same port) and wait until it answers PING."""
        assert not self.running, "redis-server is running already"
        # fmt: off
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self._dir.name,
        ]
        # fmt: on
        with self.log_path.open("ab") as log:
            self.process = await asyncio.to_thread(
                subprocess.Popen,
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _running.add(self.process)
        await self._wait_ping()
        return self

    async def _wait_ping(self) -> None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                _running.discard(self.process)
                pytest.fail(f"redis-server exited with {code} on start:\n{self.output()}")
            if await self.ping():
                return
            if loop.time() > deadline:
                await self.stop()
                pytest.fail(
                    f"redis-server did not answer PING within {self.startup_timeout} s:\n"
                    f"{self.output()}"
                )
            await asyncio.sleep(0.05)

    async def ping(self, timeout: float = 1.0) -> bool:  # noqa: ASYNC109 (a probe's own limit)
        """Whether something answers PING on the port (an inline command: no client needed)."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                try:
                    writer.write(b"PING\r\n")
                    await writer.drain()
                    answer = await reader.readline()
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, TimeoutError):
            return False
        return answer.startswith(b"+PONG")

    async def stop(self) -> int | None:
        """Terminate redis-server and wait for it to exit, so its port is free again."""
        if self.process is None:
            return None
        return await _terminate(self.process, 10.0)

    async def kill(self) -> int | None:
        """SIGKILL, like a crash: no clean shutdown."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return await _terminate(self.process, 0)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            self._dir.cleanup()
