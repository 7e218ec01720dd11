"""A GraphQL-over-websocket client for tests, speaking graphql-transport-ws and legacy graphql-ws.

    async with live_client(live_server.base_url, org.seller.api.token) as client:
        sub = await client.subscribe("subscription { ... }")
        payload = await sub.next()

One background task reads the socket and routes each message by operation id to a queue of its
own, so several subscriptions can share one socket. A refused connection raises `Rejected`.
"""

# Timeouts are arguments (`await sub.next(timeout=1)`) rather than `asyncio.timeout` blocks
# around each call: the tests read better, and every wait names its own limit.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

Protocol = Literal["graphql-transport-ws", "graphql-ws"]
PROTOCOLS: tuple[Protocol, ...] = ("graphql-transport-ws", "graphql-ws")
TRANSPORT_WS: Protocol = "graphql-transport-ws"
LEGACY_WS: Protocol = "graphql-ws"

Message = dict[str, Any]


class Rejected(Exception):
    """The server refused the connection instead of acknowledging connection_init.

    `status` is the HTTP status when the upgrade itself was refused (then `code` is None);
    `code` and `reason` come from the close frame; `payload` is a legacy connection_error's.
    """

    def __init__(
        self,
        code: int | None,
        reason: str = "",
        payload: Any = None,
        *,
        status: int | None = None,
        messages: list[Message] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.payload = payload
        self.status = status
        self.messages = messages or []
        super().__init__(self._describe())

    @property
    def connection_error(self) -> bool:
        """Whether the server sent a (legacy graphql-ws) connection_error message."""
        return any(message.get("type") == "connection_error" for message in self.messages)

    def _describe(self) -> str:
        if self.status is not None:
            return f"websocket upgrade refused with HTTP {self.status}"
        parts = []
        if self.connection_error:
            parts.append(f"connection_error {self.payload!r}")
        parts.append(f"closed with {self.code} {self.reason!r}" if self.code else "not closed")
        return "connection refused: " + ", then ".join(parts)


class Closed(Exception):
    """The socket closed while an operation still waited for messages."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"the websocket closed with {code} {reason!r}")


class Completed(Exception):
    """The server completed the operation: no more payloads will come."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        super().__init__(f"operation {operation_id} completed")


class OperationError(Exception):
    """The server answered the operation with an `error` message (which also ends it)."""

    def __init__(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        self.operation_id = operation_id
        self.errors = errors
        super().__init__(f"operation {operation_id} failed: {errors!r}")


@dataclass
class Ended:
    """How an operation ended, as `Subscription.closed_or_completed` saw it."""

    how: Literal["completed", "error", "closed"]
    code: int | None = None  # the close code, when the socket closed
    reason: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    payloads: list[Message] = field(default_factory=list)  # the payloads that came before


def graphql_ws_url(base_url: str, path: str = "/graphql") -> str:
    """ws://host:port/graphql for http://host:port (wss:// for https://)."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def init_payload(token: str | None, payload: Any = None) -> Any:
    """The connection_init payload: `payload` as given, else the bearer token, else `{}`."""
    if payload is not None:
        return payload
    return {"authorization": f"Bearer {token}"} if token else {}


Item = Message | Closed


class Subscription:
    """One operation on a `Client`; its messages arrive on a queue of its own."""

    def __init__(self, client: Client, operation_id: str, queue: asyncio.Queue[Item]) -> None:
        self.client = client
        self.id = operation_id
        self._queue = queue
        self._ended: Completed | OperationError | Closed | None = None
        self.stopped = False

    async def next(self, timeout: float = 5.0) -> Message:
        """The payload (`{"data": ..., "errors": ...}`) of the next next/data message.

        Raises TimeoutError, or `Completed`, `OperationError` or `Closed` once the operation ended.
        """
        if self._ended is not None:
            raise self._ended
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no message for operation {self.id} within {timeout} s") from None
        return self._payload(item)

    async def take(self, n: int, timeout: float = 5.0) -> list[Message]:
        """The next n payloads; `timeout` applies to each of them."""
        return [await self.next(timeout) for _ in range(n)]

    async def expect_nothing(self, seconds: float = 0.5) -> None:
        """Fail if anything at all (a payload, the end, a close) arrives within `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            # The legacy protocol confirms a stop with a complete: that is no news.
            if self.stopped and isinstance(item, dict) and item.get("type") == "complete":
                self._ended = Completed(self.id)
                continue
            raise AssertionError(f"expected nothing for operation {self.id}, got {item!r}")

    async def stop(self) -> None:
        """Ask the server to end the operation (complete, or stop in graphql-ws)."""
        self.stopped = True
        kind = "complete" if self.client.protocol == TRANSPORT_WS else "stop"
        # Stopping is clean-up: a socket that closed already has stopped everything.
        with suppress(Closed):
            await self.client.send({"id": self.id, "type": kind})

    async def closed_or_completed(self, timeout: float = 5.0) -> Ended:
        """Wait until the operation completes, fails or its socket closes; raise on timeout.

        Payloads that arrive meanwhile are collected in `Ended.payloads`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        payloads: list[Message] = []
        while True:
            try:
                if self._ended is None:
                    item = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                    payloads.append(self._payload(item))
                    continue
                raise self._ended
            except TimeoutError:
                raise TimeoutError(
                    f"operation {self.id} neither completed nor closed within {timeout} s "
                    f"(payloads meanwhile: {payloads!r})"
                ) from None
            except Completed:
                return Ended("completed", payloads=payloads)
            except OperationError as error:
                return Ended("error", errors=error.errors, payloads=payloads)
            except Closed as closed:
                return Ended("closed", closed.code, closed.reason, payloads=payloads)

    def _payload(self, item: Item) -> Message:
        """The payload of a next/data message; remember and raise the end of the operation."""
        if isinstance(item, Closed):
            self._ended = item
            raise item
        kind = item.get("type")
        if kind in ("next", "data"):
            return item.get("payload") or {}
        if kind == "complete":
            self._ended = Completed(self.id)
            raise self._ended
        if kind == "error":
            # graphql-transport-ws sends a list of errors, graphql-ws a single error.
            payload: Any = item.get("payload")
            errors: list[dict[str, Any]] = payload if isinstance(payload, list) else [payload]
            self._ended = OperationError(self.id, errors)
            raise self._ended
        raise AssertionError(f"unexpected message for operation {self.id}: {item!r}")


class Client:
    """An open, acknowledged GraphQL websocket connection (see `live_client`)."""

    def __init__(self, ws: ClientConnection, protocol: Protocol) -> None:
        self.ws = ws
        self.protocol = protocol
        self.messages: list[Message] = []  # everything received, in order, for debugging
        self.ack_payload: Any = None
        self._queues: dict[str, asyncio.Queue[Item]] = {}
        # Messages without an id (connection_ack, connection_error, ...), keep-alives excepted.
        self._control: asyncio.Queue[Item] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._closed: Closed | None = None
        self._closed_event = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="graphql-ws reader")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def send(self, message: Message) -> None:
        """Send one raw protocol message; raise `Closed` if the socket is closed."""
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed:
            raise Closed(self.ws.close_code, self.ws.close_reason or "") from None

    async def subscribe(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        id: str | None = None,
    ) -> Subscription:
        """Start an operation (subscribe, or start in graphql-ws) with a fresh id or `id`."""
        operation_id = id if id is not None else str(next(self._ids))
        # The queue exists before the request goes out, so no early answer can be lost.
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self._queues[operation_id] = queue
        if self._closed is not None:
            queue.put_nowait(self._closed)
        payload: Message = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        if operation_name is not None:
            payload["operationName"] = operation_name
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        # A socket the server closed shows as `Closed` from the subscription's next().
        with suppress(Closed):
            await self.send({"id": operation_id, "type": kind, "payload": payload})
        return Subscription(self, operation_id, queue)

    async def control(self, timeout: float = 5.0) -> Message:
        """The next message without an id (connection_ack, connection_error, ...)."""
        try:
            item = await asyncio.wait_for(self._control.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no connection-level message within {timeout} s") from None
        if isinstance(item, Closed):
            self._control.put_nowait(item)  # the socket stays closed for later calls too
            raise item
        return item

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close the socket; its close code and reason."""
        try:
            await asyncio.wait_for(self._closed_event.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"the server did not close the socket within {timeout} s; "
                f"messages received: {self.messages!r}"
            ) from None
        assert self._closed is not None
        return self._closed.code, self._closed.reason

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)
        with suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = {"type": None, "raw": raw}
                if not isinstance(message, dict):
                    message = {"type": None, "raw": raw}
                self.messages.append(message)
                kind = message.get("type")
                if kind == "ping":
                    # The server may drop a client that leaves its pings unanswered.
                    with suppress(ConnectionClosed):
                        await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                if kind in ("pong", "ka"):
                    continue
                operation_id = message.get("id")
                if operation_id is None:
                    self._control.put_nowait(message)
                else:
                    self._queues.setdefault(str(operation_id), asyncio.Queue()).put_nowait(message)
        except ConnectionClosed:
            pass  # an abnormal close: its code is on self.ws all the same
        finally:
            # Wake up everything waiting, so that no test hangs on a dead socket.
            self._closed = Closed(self.ws.close_code, self.ws.close_reason or "")
            self._closed_event.set()
            self._control.put_nowait(self._closed)
            for queue in self._queues.values():
                queue.put_nowait(self._closed)

    async def _handshake(self, payload: Any, timeout: float) -> None:
        await self.send({"type": "connection_init", "payload": payload})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        error_payload: Any = None
        while True:
            try:
                message = await self.control(max(deadline - loop.time(), 0))
            except Closed as closed:
                raise Rejected(
                    closed.code, closed.reason, error_payload, messages=self.messages
                ) from None
            except TimeoutError:
                if any(m.get("type") == "connection_error" for m in self.messages):
                    raise Rejected(None, "", error_payload, messages=self.messages) from None
                raise TimeoutError(
                    f"no connection_ack within {timeout} s; messages received: {self.messages!r}"
                ) from None
            if message.get("type") == "connection_ack":
                self.ack_payload = message.get("payload")
                return
            if message.get("type") == "connection_error":
                # graphql-ws closes the socket right after: wait for the close code as well.
                error_payload = message.get("payload")


@asynccontextmanager
async def live_client(
    base_url: str,
    token: str | None,
    protocol: Protocol = TRANSPORT_WS,
    origin: str | None = None,
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    init: bool = True,
    timeout: float = 5.0,
) -> AsyncIterator[Client]:
    """An acknowledged GraphQL websocket connection to `base_url`'s /graphql.

    connection_init carries `payload`, else `{"authorization": "Bearer <token>"}`, else `{}`.
    With `init=False` the client sends nothing: the test drives the handshake with `send`.
    Raises `Rejected` if the server refuses the upgrade or the connection_init.
    """
    try:
        ws = await connect(
            graphql_ws_url(base_url),
            subprotocols=[Subprotocol(protocol)],
            origin=Origin(origin) if origin is not None else None,
            additional_headers=dict(headers) if headers else None,
            proxy=None,  # loopback servers only: never go through a proxy from the environment
            open_timeout=timeout,
        )
    except InvalidStatus as error:
        raise Rejected(None, status=error.response.status_code) from None
    client = Client(ws, protocol)
    try:
        if init:
            await client._handshake(init_payload(token, payload), timeout)
            assert ws.subprotocol == protocol, (
                f"asked for subprotocol {protocol!r}, the server chose {ws.subprotocol!r}"
            )
        yield client
    finally:
        await client.close()


async def expect_rejected(
    base_url: str,
    token: str | None,
    protocol: Protocol = TRANSPORT_WS,
    origin: str | None = None,
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Rejected:
    """The `Rejected` of a connection that must be refused; fail if the server acknowledges it."""
    try:
        async with live_client(
            base_url, token, protocol, origin, payload, headers=headers, timeout=timeout
        ) as client:
            messages = client.messages
    except Rejected as rejected:
        return rejected
    raise AssertionError(f"the server acknowledged the connection: {messages!r}")
