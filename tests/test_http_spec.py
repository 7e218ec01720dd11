"""The GraphQL-over-HTTP specification: graphql-http's audit suite (npm `graphql-http`,
`auditServer`) against the live server, warnings included. `make test` installs it (node and
npm are needed for the suite, not for serving)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parent / "audit"


async def test_the_graphql_http_audit_passes_without_warnings(live_server):
    node = shutil.which("node")
    if node is None or not (AUDIT / "node_modules" / "graphql-http").is_dir():
        message = "node and tests/audit/node_modules are needed: run the suite with `make test`"
        if os.environ.get("CI"):
            pytest.fail(message)  # under CI a missing audit is a failure, never a skip
        pytest.skip(message)
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT / "audit.mjs"),
        f"{live_server.base_url}/graphql",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    report = output.decode()
    assert process.returncode == 0, report
    assert " 0 not ok" in report, report
