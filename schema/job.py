"""Background jobs, as admins see them: their organization's launches and their state."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models import Job as JobRow
from models import JobState
from resolvers import jobs
from schema.base import Connection, Info, connection, context, page_request

JobStateEnum = strawberry.enum(
    JobState,
    name="JobState",
    description="QUEUED: waiting for its time or a free slot; RUNNING: a process holds it; DONE; "
    "FAILED: every attempt failed (see lastError); CANCELLED.",
)


@strawberry.type(description="A background job of the organization (a campaign's launch...).")
class BackgroundJob:
    id: strawberry.ID
    kind: str = strawberry.field(description="What it does: campaign.launch...")
    state: JobState
    attempts: int = strawberry.field(description="Attempts of its current run.")
    max_attempts: int
    run_after: datetime = strawberry.field(description="Not run before then (retries, waits).")
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: JobRow) -> BackgroundJob:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=row.kind,
            state=row.state,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_after=row.run_after,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


@strawberry.type
class JobQueries:
    @strawberry.field(description="The organization's background jobs, newest first (admins).")
    async def background_jobs(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        states: list[JobState] | None = None,
    ) -> Connection[BackgroundJob]:
        request = page_request(info, first, after, None, None)
        page = await jobs.list_jobs(context(info), request, states)
        return connection(page, BackgroundJob.from_row)
