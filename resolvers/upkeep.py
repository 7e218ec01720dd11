"""The scheduled upkeep jobs (resolvers/jobs.py runs them on their schedules): the lifecycle
sweep, the change log's pruning (and the finished jobs'), the outbox's resending. The same work
as the manage.py commands of the same names, which stay for operators."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from resolvers import jobs
from resolvers.lifecycle import sweep
from resolvers.message import send_outbox
from resolvers.sync import prune

log = logging.getLogger("crm.jobs")

FINISHED_JOBS_KEPT = timedelta(days=7)


@jobs.handler("lifecycle.sweep")
async def lifecycle_sweep(work: jobs.Work) -> datetime | None:
    moved = await sweep()
    log.info("lifecycle sweep: %s contact(s) became inactive clients", moved)
    return None


@jobs.handler("changes.prune")
async def prune_changes(work: jobs.Work) -> datetime | None:
    removed = await prune(timedelta(days=work.config.sync_retention_days))
    forgotten = await jobs.prune_jobs(FINISHED_JOBS_KEPT)
    log.info("pruning: %s change(s), %s finished job(s) removed", removed, forgotten)
    return None


@jobs.handler("outbox.resend")
async def resend_outbox(work: jobs.Work) -> datetime | None:
    if not work.config.smtp_url:
        return None
    outcome = await send_outbox(
        work.config, include_failed=False, stale_after=timedelta(minutes=10)
    )
    if outcome["SENT"] or outcome["FAILED"]:
        log.info("outbox: %s sent, %s failed", outcome["SENT"], outcome["FAILED"])
    return None
