"""Job runners in a process of their own, for tests of the claim across processes
(tests/test_jobs.py). The settings come from the environment (DATABASE_URL, JOB_*).

python -m tests.claimers queue JOBS DELAY   an organization with JOBS `test.hold` jobs due in
                                            DELAY seconds; prints its id
python -m tests.claimers run ORG RUNNERS LOG
                                            RUNNERS runners in this process; each `test.hold`
                                            job writes "start <time> <job>" and "end <time> <job>"
                                            lines to LOG (time.monotonic(), which every process
                                            of the machine shares); exits once ORG's jobs are done
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tortoise import Tortoise

from config import Settings, tortoise_config
from models import Job, JobState, Organization
from resolvers.jobs import HANDLERS, Runner, Work, enqueue

HOLD = 0.2  # seconds each job runs


async def queue(size: int, delay: float) -> None:
    organization = await Organization.create(name=f"Claims {uuid.uuid4().hex[:6]}")
    due = datetime.now(UTC) + timedelta(seconds=delay)
    for n in range(size):
        key = f"test.hold:{organization.id}:{n}"
        await enqueue("test.hold", key, {}, organization_id=organization.id, run_after=due)
    print(organization.id, flush=True)


async def run(settings: Settings, organization_id: int, runners: int, log: Path) -> None:
    with log.open("a", buffering=1) as out:

        async def hold(work: Work) -> None:
            out.write(f"start {time.monotonic():.6f} {work.job.id}\n")
            await asyncio.sleep(HOLD)
            out.write(f"end {time.monotonic():.6f} {work.job.id}\n")

        HANDLERS["test.hold"] = hold
        started = [Runner(settings) for _ in range(runners)]
        for runner in started:
            await runner.start()
        try:
            left = Job.filter(organization_id=organization_id).exclude(state=JobState.DONE)
            while await left.exists():  # noqa: ASYNC110 (another process finishes them)
                await asyncio.sleep(0.1)
        finally:
            for runner in started:
                await runner.stop()


async def main(argv: list[str]) -> None:
    settings = Settings.from_env()
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        if argv[0] == "queue":
            await queue(int(argv[1]), float(argv[2]))
        else:
            await run(settings, int(argv[1]), int(argv[2]), Path(argv[3]))
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
