"""The Starlette application: /graphql over HTTP (and websockets), health, readiness, metrics.

`python server.py` serves it with uvicorn on HOST:PORT.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from config import Settings, settings, tortoise_config
from observability import RequestLogMiddleware, configure_logging
from resolvers.auth import authenticate
from resolvers.context import RequestContext
from schema import build_schema
from subscriptions.bus import create_bus

log = logging.getLogger("crm.server")


class CrmGraphQL(GraphQL):
    async def get_context(self, request: HTTPConnection, response: Any) -> RequestContext:  # type: ignore[override]
        state = request.scope.setdefault("state", {})
        viewer, token_hash, auth_error = await authenticate(request.headers.get("authorization"))
        ctx = RequestContext(
            request_id=state.get("request_id") or uuid.uuid4().hex,
            viewer=viewer,
            token_hash=token_hash,
            auth_error=auth_error,
            request=request,
            response=response,
            log_fields=state.setdefault("log", {}),
        )
        if viewer is not None:
            ctx.log_fields["organization"] = viewer.organization_id
            ctx.log_fields["user"] = viewer.id
        return ctx


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(_: Request) -> Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as error:  # any failure to reach the database means not ready
        log.warning("database not reachable: %s", error)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(config: Settings = settings) -> Starlette:
    graphql = CrmGraphQL(
        build_schema(config),
        graphql_ide="graphiql" if config.graphiql else None,
        allowed_origins=config.cors_origins,
    )
    bus = create_bus(config.broadcast_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=tortoise_config(config.database_url)):
            await bus.connect()
            try:
                yield
            finally:
                await bus.disconnect()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.bus = bus
    return app


def main() -> None:
    configure_logging(settings.log_level)
    ide = " (GraphiQL in a browser)" if settings.graphiql else ""
    print(f"Serving http://{settings.host}:{settings.port}/graphql{ide}", flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        access_log=False,  # RequestLogMiddleware writes the structured access log
    )


if __name__ == "__main__":
    main()
