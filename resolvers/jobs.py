"""Background jobs: a queue kept in the app's own database, run by every server process (and by
`manage.py worker` processes), any number of them on PostgreSQL.

A job is a row (models.Job). A runner claims a due job by moving it to RUNNING with a lease
(`locked_by`, `locked_until`), renews the lease while the handler runs, and records the outcome
only while it still holds the lease. A process that dies (`kill -9`) stops renewing: once its
lease has expired any runner claims the job again and runs it from the start. Delivery is thus
at least once, and handlers are idempotent (a campaign's launch claims each member in the
transaction that records its message, so a second run takes up what the first left).

A handler that raises is retried after `base * 2^(attempt-1)`, times a random factor between
0.5 and 1 (jitter, so that retries from many jobs do not arrive together), until the job's
attempts run out: it then ends FAILED with the error. A handler may also return a time: the job
goes back to the queue until then (a campaign waiting for its messages' next delivery attempt).

Fairness: a runner takes at most `job_slots` jobs at once, and never a job of an organization
that has `job_org_slots` jobs running already (in any process), so one tenant's launches leave
slots to the others. The cap holds exactly across processes. On PostgreSQL a claim holds the
candidate organization's advisory lock (`JOB_CLAIM_LOCK`, that organization's claims only)
while it counts its running jobs and takes the job. On SQLite the count and the take are one
statement (an UPDATE whose condition counts the organization's running jobs): SQLite runs a
write statement under its database-wide write lock from its first read, so no other process
(a worker beside a server) nor coroutine claims between the count and the take. (Tortoise's
SQLite transactions begin DEFERRED, and its lock is per process: a count and an UPDATE in one
of them would not be enough.)

On PostgreSQL the claim reads the candidate `FOR UPDATE SKIP LOCKED` (runners never wait on
each other's rows); on SQLite, where one writer runs at a time, it is a conditional UPDATE.
Either way the UPDATE re-checks that the job is still due, so a job has one holder at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q, Subquery
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from config import Settings
from models import Job, JobState, Role
from observability import JOBS, JOBS_FINISHED
from resolvers.context import RequestContext
from resolvers.errors import forbidden
from resolvers.events import lock_organization
from resolvers.foreground import Courtesy
from resolvers.pagination import BY_ID, Page, PageRequest, paginate

log = logging.getLogger("crm.jobs")

FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
# pg_advisory_xact_lock(JOB_CLAIM_LOCK, organization id): an organization's job claims, one at a
# time (resolvers/events.py's ORGANIZATION_LOG_LOCK is 4711).
JOB_CLAIM_LOCK = 4_712


# A job rings its campaign's progress at most this often (the last change is always rung).
PROGRESS_RING_SECONDS = 0.2


@dataclass
class Work:
    """What a handler gets: its job, the settings, what to ring after it commits events or
    progress (this process's live hub, or a worker's doorbell on the bus:
    subscriptions.bus.Doorbell; None: nothing to ring), and its courtesy toward this process's
    requests (`await work.courtesy.turn()` between steps, never inside a transaction)."""

    job: Job
    config: Settings
    hub: Any = None
    courtesy: Courtesy = field(default_factory=Courtesy)
    _rung_at: float = field(default=float("-inf"), init=False)
    _trailing: asyncio.TimerHandle | None = field(default=None, init=False)

    def announce(self) -> None:
        if self.hub is not None and self.job.organization_id is not None:
            self.hub.announce(organizations=[self.job.organization_id])

    def progress(self, campaign_id: int) -> None:
        """After a commit that moved the campaign's status or counts: wake its campaignProgress
        subscriptions, in every process. Rings closer than PROGRESS_RING_SECONDS are coalesced
        into one at the end of that time."""
        if self.hub is None:
            return
        loop = asyncio.get_running_loop()
        wait = self._rung_at + PROGRESS_RING_SECONDS - loop.time()
        if wait <= 0:
            self._ring_progress(campaign_id)
        elif self._trailing is None:
            self._trailing = loop.call_later(wait, self._ring_progress, campaign_id)

    def _ring_progress(self, campaign_id: int) -> None:
        self._trailing = None
        self._rung_at = asyncio.get_running_loop().time()
        self.hub.announce(campaigns=[campaign_id])


Handler = Callable[[Work], Coroutine[Any, Any, datetime | None]]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(run: Handler) -> Handler:
        HANDLERS[kind] = run
        return run

    return register


def backoff(attempt: int, base: float) -> timedelta:
    """How long before attempt `attempt + 1`: doubling from `base`, times 0.5 to 1 (jitter)."""
    return timedelta(seconds=base * 2 ** max(attempt - 1, 0) * (0.5 + random.random() / 2))


async def enqueue(
    kind: str,
    key: str,
    payload: dict[str, Any],
    *,
    organization_id: int | None,
    run_after: datetime | None = None,
    attempts: int = 5,
    again: bool = False,
) -> None:
    """Queue a job unless one with this key exists; with `again`, a finished one is queued
    again, and one waiting is due now. Call it inside the transaction that makes the work
    due, then `wake()` after it."""
    now = datetime.now(UTC)
    existing = await Job.filter(key=key).first()
    if existing is None:
        await Job.create(
            organization_id=organization_id,
            kind=kind,
            key=key,
            payload=payload,
            run_after=run_after or now,
            max_attempts=attempts,
        )
    elif again and existing.state == JobState.QUEUED:  # waiting for a retry: due now
        await Job.filter(id=existing.id, state=JobState.QUEUED).update(run_after=now)
    elif again and existing.state in FINISHED:
        await Job.filter(id=existing.id, state__in=FINISHED).update(
            state=JobState.QUEUED,
            payload=payload,
            run_after=run_after or now,
            attempts=0,
            last_error=None,
            finished_at=None,
        )


_runners: set[Runner] = set()


def wake() -> None:
    """Tell this process's runners that a job was queued (after its commit)."""
    for runner in _runners:
        runner.wake.set()


@dataclass(frozen=True)
class Schedule:
    kind: str
    every: timedelta


def schedules(config: Settings) -> list[Schedule]:
    return [
        Schedule("lifecycle.sweep", timedelta(hours=config.lifecycle_sweep_hours)),
        Schedule("changes.prune", timedelta(hours=config.prune_changes_hours)),
        Schedule("outbox.resend", timedelta(minutes=config.resend_outbox_minutes)),
    ]


class Runner:
    """Claims due jobs and runs them, in this process, until stopped."""

    def __init__(self, config: Settings, *, hub: Any = None) -> None:
        self.config = config
        self.hub = hub
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:100]
        self.wake = asyncio.Event()
        self.running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.config.job_lease_seconds)

    async def start(self) -> None:
        # The handlers register themselves when their modules load.
        import resolvers.campaign  # noqa: F401
        import resolvers.upkeep  # noqa: F401

        _runners.add(self)
        self._loop_task = asyncio.create_task(self._loop(), name="jobs runner")

    async def stop(self) -> None:
        """Stop claiming, cancel the running handlers and give their jobs back to the queue at
        once (another process need not wait for the lease to expire)."""
        self._stopping = True
        _runners.discard(self)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        last_schedule = datetime.min.replace(tzinfo=UTC)
        last_gauge = last_schedule
        while True:
            now = datetime.now(UTC)
            try:
                if now - last_schedule > timedelta(seconds=10):
                    await self._schedule(now)
                    last_schedule = now
                if now - last_gauge > timedelta(seconds=5):
                    await _measure()
                    last_gauge = now
                while len(self.running) < self.config.job_slots:
                    job = await self._claim()
                    if job is None:
                        break
                    self.running[job.id] = asyncio.create_task(
                        self._run(job), name=f"job {job.id} {job.kind}"
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: try again at the next tick
                log.exception("claiming jobs failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.job_poll_seconds):
                    await self.wake.wait()

    async def _schedule(self, now: datetime) -> None:
        """Queue each schedule's job for the current period; its key makes it once per period
        whatever the number of processes."""
        for schedule in schedules(self.config):
            seconds = schedule.every.total_seconds()
            if seconds <= 0:
                continue
            slot = int(now.timestamp() // seconds)
            key = f"{schedule.kind}:{slot}"
            if await Job.exists(key=key):
                continue
            with contextlib.suppress(IntegrityError):  # another process queued it meanwhile
                await Job.create(
                    organization_id=None,
                    kind=schedule.kind,
                    key=key,
                    payload={},
                    run_after=now,
                    max_attempts=self.config.job_attempts,
                )

    async def _claim(self) -> Job | None:
        now = datetime.now(UTC)
        full = await self._full(now)
        due = Q(state=JobState.QUEUED, run_after__lte=now) | Q(
            state=JobState.RUNNING, locked_until__lt=now
        )
        connection = connections.get("default")
        if connection.capabilities.dialect != "postgres":
            for _ in range(3):  # the candidate was taken or its organization filled up: the next
                job = await self._candidates(due, full).first()
                if job is None:
                    return None
                taken = await self._take(job, due, now, capped=True)
                if taken is not None:
                    return taken
                self.wake.set()  # (look again at the next tick: it may have been the other cause)
                if job.organization_id is not None:
                    full.append(job.organization_id)
            return None
        for _ in range(3):  # the candidate's organization filled up meanwhile: the next one
            async with in_transaction():
                query = self._candidates(due, full).select_for_update(skip_locked=True)
                job = await query.first()
                if job is None or job.organization_id is None:
                    return await self._take(job, due, now)
                # The organization's claims, one at a time in any process (other organizations
                # claim meanwhile): its running count cannot change between our count and
                # our claim, so its cap holds exactly.
                await lock_organization(JOB_CLAIM_LOCK, job.organization_id)
                running = await Job.filter(
                    organization_id=job.organization_id,
                    state=JobState.RUNNING,
                    locked_until__gte=now,
                ).count()
                if running < self.config.job_org_slots:
                    return await self._take(job, due, now)
            full.append(job.organization_id)
        self.wake.set()
        return None

    async def _full(self, now: datetime) -> list[int]:
        """The organizations that have `job_org_slots` jobs running already."""
        return [
            organization_id
            for organization_id, count in await Job.filter(
                state=JobState.RUNNING, locked_until__gte=now, organization_id__isnull=False
            )
            .annotate(count=Count("id"))
            .group_by("organization_id")
            .values_list("organization_id", "count")
            if count >= self.config.job_org_slots
        ]

    def _candidates(self, due: Q, full: list[int]) -> Any:
        query = Job.filter(due, kind__in=list(HANDLERS)).order_by("run_after", "id").limit(1)
        if full:
            query = query.filter(Q(organization_id__isnull=True) | ~Q(organization_id__in=full))
        return query

    async def _take(
        self, job: Job | None, due: Q, now: datetime, *, capped: bool = False
    ) -> Job | None:
        """Move the job to RUNNING under our lease if it is still due (and, `capped`, if its
        organization has fewer than `job_org_slots` jobs running, in the same statement)."""
        if job is None:
            return None
        query = Job.filter(due, id=job.id)
        if capped and job.organization_id is not None:
            full = (
                Job.filter(
                    organization_id=job.organization_id,
                    state=JobState.RUNNING,
                    locked_until__gte=now,
                )
                .annotate(count=Count("id"))
                .group_by("organization_id")
                .filter(count__gte=self.config.job_org_slots)
                .values("organization_id")
            )
            query = query.filter(~Q(organization_id__in=Subquery(full)))
        taken = await query.update(
            state=JobState.RUNNING,
            locked_by=self.name,
            locked_until=now + self.lease,
            attempts=F("attempts") + 1,
        )
        if not taken:
            return None
        return await Job.get(id=job.id)

    async def _run(self, job: Job) -> None:
        run = HANDLERS[job.kind]
        work = asyncio.create_task(
            run(Work(job, self.config, self.hub, Courtesy(duty=self.config.job_busy_duty)))
        )
        beat = asyncio.create_task(self._heartbeat(job, work))
        outcome = "done"
        try:
            try:
                again = await work
            except asyncio.CancelledError:
                if self._stopping:
                    await self._release(job)
                    outcome = "released"
                    return
                outcome = "lease lost"
                return  # the lease was lost: the job belongs to another runner now
            except Exception as error:
                log.exception("job %s (%s) failed, attempt %s", job.id, job.kind, job.attempts)
                outcome = await self._failed(job, error)
                return
            await self._finish(job, again)
            outcome = "done" if again is None else "again"
        finally:
            beat.cancel()
            self.running.pop(job.id, None)
            JOBS_FINISHED.labels(job.kind, outcome).inc()
            if not self._stopping:
                self.wake.set()

    async def _heartbeat(self, job: Job, work: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.config.job_lease_seconds / 3)
            try:
                kept = await self._mine(job).update(locked_until=datetime.now(UTC) + self.lease)
            except Exception:
                log.exception("renewing the lease of job %s failed", job.id)
                continue
            if not kept:
                log.warning("job %s: lease lost, stopping it", job.id)
                work.cancel()
                return

    def _mine(self, job: Job) -> Any:
        return Job.filter(id=job.id, state=JobState.RUNNING, locked_by=self.name)

    async def _finish(self, job: Job, again: datetime | None) -> None:
        if again is None:
            await self._mine(job).update(
                state=JobState.DONE, locked_by=None, locked_until=None,
                finished_at=datetime.now(UTC), last_error=None,
            )  # fmt: skip
        else:
            await self._mine(job).update(
                state=JobState.QUEUED, locked_by=None, locked_until=None, run_after=again,
                attempts=0,
            )  # fmt: skip

    async def _failed(self, job: Job, error: Exception) -> str:
        message = f"{type(error).__name__}: {error}"[:2000]
        if job.attempts >= job.max_attempts:
            await self._mine(job).update(
                state=JobState.FAILED, locked_by=None, locked_until=None,
                finished_at=datetime.now(UTC), last_error=message,
            )  # fmt: skip
            return "failed"
        retry = datetime.now(UTC) + backoff(job.attempts, self.config.job_retry_base_seconds)
        await self._mine(job).update(
            state=JobState.QUEUED, locked_by=None, locked_until=None, run_after=retry,
            last_error=message,
        )  # fmt: skip
        return "retry"

    async def _release(self, job: Job) -> None:
        with contextlib.suppress(Exception):  # the lease then expires on its own
            await self._mine(job).update(
                state=JobState.QUEUED, locked_by=None, locked_until=None,
                attempts=F("attempts") - 1,
            )  # fmt: skip


async def _measure() -> None:
    """The queue's depth for /metrics: jobs waiting and running, by kind."""
    rows = (
        await Job.filter(state__in=[JobState.QUEUED, JobState.RUNNING])
        .annotate(count=Count("id"))
        .group_by("kind", "state")
        .values_list("kind", "state", "count")
    )
    JOBS.clear()
    for kind, state, count in rows:
        JOBS.labels(kind, getattr(state, "value", state)).set(count)


async def list_jobs(
    ctx: RequestContext, page: PageRequest, states: list[JobState] | None
) -> Page[Job]:
    """The organization's jobs, newest first (admins)."""
    viewer = ctx.require_viewer()
    if viewer.role != Role.ADMIN:
        raise forbidden("Background jobs are shown to admins.")
    query = Job.filter(organization_id=viewer.organization_id)
    if states:
        query = query.filter(state__in=states)
    return await paginate(query, page, BY_ID, descending=True)


async def prune_jobs(older_than: timedelta) -> int:
    """Forget finished jobs older than this."""
    return await Job.filter(
        state__in=FINISHED, finished_at__lt=datetime.now(UTC) - older_than
    ).delete()
