"""Apps served in this process: the suite's own (tests/conftest.py's `live_server`), and others
beside it with other settings (`live_server.serve(...)`), each on a loopback port of its own.

    async with live_server.serve(max_query_cost=50) as server:
        ...  # server.base_url serves create_app(its settings) on the same database

Tortoise is set up once per process: the suite's app opens the database connections and the
others use them (`create_app(..., orm=False)`). A test that needs a process of its own (kill -9,
several processes on one bus) uses tests/processes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from config import Settings
from server import GracefulServer, create_app, server_config
from tests.processes import free_port


@dataclass
class AppServer:
    """An app served by uvicorn in this process, and the settings it was built with."""

    settings: Settings
    base_url: str
    app: Any = None  # the Starlette app


@asynccontextmanager
async def serve(settings: Settings, *, orm: bool) -> AsyncIterator[AppServer]:
    """`create_app(settings)` served as server.py serves it, on a free loopback port, until the
    block ends. `orm`: the app opens (and closes) the database connections of the process."""
    settings = replace(settings, host="127.0.0.1", port=free_port())
    app = create_app(settings, orm=orm)
    config = server_config(app, settings, log_level="warning", lifespan="on")
    server = GracefulServer(config, app.state.graphql)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield AppServer(settings, f"http://127.0.0.1:{settings.port}", app)
    finally:
        server.should_exit = True
        await task
