"""Outages answered honestly: PostgreSQL unreachable, Redis hung or down, SIGTERM.

PostgreSQL is made unreachable for one server process only: the process reaches it through a
TCP relay of this test's (real connections, real protocol), which the test shuts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.processes import RedisServer, ServerProcess, free_port
from tests.test_limits import SMALL, _many_accounts, post
from tests.ws import PROTOCOLS, expect_rejected, live_client


class Relay:
    """Forwards 127.0.0.1:<port> to PostgreSQL until `cut()`: then every connection drops and
    new ones are refused."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def relayed(database_url: str) -> AsyncIterator[tuple[Relay, str]]:
    target = int(database_url.split("@", 1)[1].split("/", 1)[0].split(":")[1])
    relay = Relay(target)
    await relay.start()
    try:
        yield relay, database_url.replace(f":{target}/", f":{relay.port}/")
    finally:
        with contextlib.suppress(Exception):
            await relay.cut()


async def test_database_down_is_a_503_with_a_code_on_every_route(live_server, org):
    if live_server.database != "postgres":
        pytest.skip("the embedded SQLite file cannot go away while its process runs")
    async with relayed(live_server.database_url) as (relay, url):  # noqa: SIM117 (url first)
        async with ServerProcess({"DATABASE_URL": url}) as server:
            assert (
                "errors" not in (await post(org.seller, {"query": SMALL}, server.base_url)).json()
            )
            await relay.cut()
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=30, trust_env=False
            ) as http:
                signed_in = {"authorization": f"Bearer {org.seller.api.token}"}
                login = 'mutation { login(email: "someone@example.com", password: "p") { token } }'
                answers = [
                    await http.post("/graphql", json={"query": SMALL}, headers=signed_in),
                    await http.post("/graphql", json={"query": login}),
                    await http.get("/export/accounts.ndjson", headers=signed_in),
                ]
                for answer in answers:
                    assert answer.status_code == 503, answer.text
                    assert int(answer.headers["retry-after"]) >= 1
                    error = answer.json()["errors"][0]
                    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                    assert error["extensions"]["requestId"] == answer.headers["x-request-id"]
                assert (await http.get("/readyz")).status_code == 503
            for protocol in PROTOCOLS:
                rejected = await expect_rejected(server.base_url, org.seller.api.token, protocol)
                assert rejected.code == 1013, (protocol, rejected)


async def _timed(member, base_url: str, rounds: int = 5) -> float:
    """The slowest of `rounds` small queries, in seconds."""
    slowest = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        answer = await post(member, {"query": SMALL}, base_url)
        slowest = max(slowest, time.perf_counter() - began)
        assert "errors" not in answer.json(), answer.text
    return slowest


async def test_a_hung_or_dead_redis_costs_at_most_a_short_timeout(live_server, org):
    async with (
        RedisServer() as redis_server,
        live_server.serve(
            rate_limit_redis_url=redis_server.url,
            rate_limit_per_second=100,
            rate_limit_org_per_second=100,  # both buckets live in Redis
        ) as server,
    ):
        healthy = await _timed(org.seller, server.base_url, rounds=8)
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # hung: connected, never answers
        try:
            hung = await _timed(org.seller, server.base_url, rounds=8)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        await redis_server.kill()  # dead: refused
        dead = await _timed(org.seller, server.base_url, rounds=8)
    # Each Redis call gives up within 100 ms, and the breaker stops calling it after a few.
    assert hung < healthy + 0.15, (healthy, hung)
    assert dead < healthy + 0.15, (healthy, dead)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_sigterm_closes_websockets_with_a_reason_and_drains_within_the_timeout(
    live_server, org, protocol
):
    env = {"DATABASE_URL": live_server.database_url, "SHUTDOWN_TIMEOUT_SECONDS": "2"}
    server = ServerProcess(env, stop_timeout=15)
    await server.start()
    try:
        async with live_client(server.base_url, org.seller.api.token, protocol) as client:
            operation = await client.subscribe("subscription { notificationAdded { id } }")
            await operation.expect_nothing(0.2)
            assert server.process is not None
            began = time.perf_counter()
            server.process.send_signal(signal.SIGTERM)
            code, reason = await client.wait_closed(timeout=10)
        assert code == 1012
        assert "restart" in reason.lower()
        # uvicorn exits through the signal it caught once it has shut down (-SIGTERM).
        returncode = await asyncio.to_thread(server.process.wait, 15)
        assert returncode in (0, -signal.SIGTERM)
        assert time.perf_counter() - began < 10
        assert "Finished server process" in server.output(80) or returncode == 0
    finally:
        await server.stop()


async def test_sigterm_cuts_requests_still_running_after_the_shutdown_timeout(live_server, org):
    if live_server.database != "postgres":
        pytest.skip("an export that outlasts the timeout needs PostgreSQL's cursor (SQLite: one)")
    await _many_accounts(live_server.database_url, org, 150_000)
    env = {
        "DATABASE_URL": live_server.database_url,
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "EXPORT_SEND_TIMEOUT_SECONDS": "600",
    }
    server = ServerProcess(env, stop_timeout=30)
    await server.start()
    headers = {"authorization": f"Bearer {org.admin.api.token}"}
    try:
        async with (
            httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http,
            http.stream("GET", "/export/accounts.ndjson", headers=headers) as held,
        ):
            assert held.status_code == 200  # and never read: it would hold the process forever
            assert server.process is not None
            began = time.perf_counter()
            server.process.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(server.process.wait, 20)
            elapsed = time.perf_counter() - began
        assert returncode in (0, -signal.SIGTERM)
        assert 1.5 < elapsed < 8, elapsed  # the timeout, then the cut
    finally:
        await server.stop()
