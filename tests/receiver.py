"""A real HTTP receiver for webhooks: a small ASGI app served by uvicorn on a loopback port.

    async with Receiver() as receiver:
        ...  # receiver.url; receiver.received: every request, in arrival order

`answer` sets what it answers (a status, and a Location for redirects); `hang` makes it hold
requests without answering; `stop()` and `start()` take it down and up again on the same port.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
import uvicorn

from tests.processes import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.status = 204
        self.location: str | None = None
        self.hang = False
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, status: int, location: str | None = None) -> None:
        self.status, self.location = status, location

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        self.received.append(Received(scope["path"], headers, body, time.time()))
        self._arrived.set()
        while self.hang:  # noqa: ASYNC110 (a flag the test flips, polled: simpler than events)
            await asyncio.sleep(0.05)
        extra = [(b"location", self.location.encode())] if self.location else []
        await send({"type": "http.response.start", "status": self.status, "headers": extra})
        # A long answer (when there may be one): the sender reads only the start of it.
        body = b"" if self.status in (204, 304) else b"ok" * 10_000
        await send({"type": "http.response.body", "body": body})

    async def start(self) -> Self:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self.hang = False
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def wait_for(self, count: int, seconds: float = 30.0, path: str = "/hook") -> None:
        """Until `count` requests (to `path`) have arrived; fails after `seconds`."""
        async with asyncio.timeout(seconds):
            while True:
                self._arrived.clear()
                if len([r for r in self.received if r.path == path]) >= count:
                    return
                await self._arrived.wait()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
