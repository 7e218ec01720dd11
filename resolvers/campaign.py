"""Campaigns: a segment, a channel, a budget and costs, a message template, and the results.

Launching answers at once (LAUNCHING) and leaves the work to a durable job (resolvers/jobs.py):
it snapshots the segment into members, then (for EMAIL) records one personalized message per
member, a batch of members per transaction together with their new status and the campaign's
progress counts. A member is claimed (PENDING -> MESSAGED) in the transaction that records its
message, so a job that dies halfway and runs again, or two launches at once, never message
anyone twice. Each batch is delivered over one SMTP connection; a failed delivery is retried
later by the same job (backoff with jitter) and ends FAILED with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tortoise.expressions import Expression, F, Q, RawSQL, ResolveContext, ResolveResult
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from models import (
    Account,
    Campaign,
    CampaignChannel,
    CampaignCost,
    CampaignMember,
    CampaignStatus,
    Contact,
    EventKind,
    Lead,
    LeadStatus,
    MemberStatus,
    Message,
    MessageStatus,
    Opportunity,
    OpportunityStatus,
    Organization,
    Role,
    Segment,
    User,
)
from models.base import from_cents
from resolvers import jobs, prepared, validation
from resolvers.access import LEADS, OPPORTUNITIES
from resolvers.context import RequestContext
from resolvers.deal_kinds import LEAD, OPPORTUNITY
from resolvers.errors import bad_input, conflict, forbidden, not_found
from resolvers.events import camel, record_event
from resolvers.foreground import Courtesy
from resolvers.message import deliver_batch
from resolvers.pagination import BY_ID, Page, PageRequest, paginate
from resolvers.permissions import check_assignable, manages_owner
from resolvers.records import referenced, referenced_user, scoped
from resolvers.segment import matching

log = logging.getLogger("crm.campaigns")

# Templates

MERGE_FIELD_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
MERGE_FIELDS: dict[str, str] = {
    "contact.first_name": "The contact's first name.",
    "contact.last_name": "The contact's last name.",
    "contact.full_name": "The contact's first and last name.",
    "contact.email": "The contact's email address.",
    "contact.title": "The contact's job title.",
    "account.name": "The contact's account (company) name.",
    "account.industry": "The account's industry.",
    "account.city": "The account's city.",
    "account.country": "The account's country.",
    "sender.full_name": "The campaign owner's name.",
    "sender.email": "The campaign owner's email address.",
    "campaign.name": "The campaign's name.",
}


def check_template(template: str, field: str) -> None:
    """Every {{field}} is a known merge field, and every {{ is closed."""
    for found in MERGE_FIELD_RE.finditer(template):
        if found.group(1) not in MERGE_FIELDS:
            known = ", ".join(MERGE_FIELDS)
            raise bad_input(
                field, f"Unknown merge field {{{{{found.group(1)}}}}}: use one of {known}."
            )
    rest = MERGE_FIELD_RE.sub("", template)
    if "{{" in rest or "}}" in rest:
        raise bad_input(
            field, "A merge field is written {{contact.first_name}}: unbalanced braces."
        )


def merge_values(
    contact: Contact, account: Account | None, sender: User, campaign: Campaign
) -> dict[str, str]:
    return {
        "contact.first_name": contact.first_name,
        "contact.last_name": contact.last_name,
        "contact.full_name": contact.full_name,
        "contact.email": contact.email or "",
        "contact.title": contact.title or "",
        "account.name": account.name if account else "",
        "account.industry": (account.industry or "") if account else "",
        "account.city": (account.city or "") if account else "",
        "account.country": (account.country or "") if account else "",
        "sender.full_name": sender.full_name,
        "sender.email": sender.email,
        "campaign.name": campaign.name,
    }


class Template:
    """A template parsed once (a launch renders it for every member): each merge field
    (MERGE_FIELD_RE) replaced by its value, its whitespace collapsed when `single_line` (a
    subject)."""

    def __init__(self, template: str, *, single_line: bool = False) -> None:
        parts = MERGE_FIELD_RE.split(template)  # text, field, text, field, ..., text
        self.texts = parts[0::2]
        self.fields = parts[1::2]
        self.single_line = single_line

    def render(self, values: dict[str, str]) -> str:
        out = [self.texts[0]]
        for field, text in zip(self.fields, self.texts[1:], strict=True):
            value = values[field]
            out.append(" ".join(value.split()) if self.single_line else value)
            out.append(text)
        return "".join(out)


# Campaigns


def _require_marketer(ctx: RequestContext) -> User:
    viewer = ctx.require_viewer()
    if viewer.role == Role.SELLER:
        raise forbidden("Admins and sales managers run campaigns.")
    return viewer


async def get_campaign(
    ctx: RequestContext, campaign_id: int, *, lock: bool = False, field: str | None = "id"
) -> Campaign:
    query = scoped(ctx, Campaign).filter(id=campaign_id)
    if lock:
        query = query.select_for_update()
    row = await query.first()
    if row is None:
        raise not_found("campaign", field)
    return row


async def _clean(
    ctx: RequestContext, values: dict[str, Any], row: Campaign | None
) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
    if values.get("channel") is not None:
        cleaned["channel"] = values["channel"]
    for name, field in (("starts_on", "startsOn"), ("ends_on", "endsOn")):
        if name in values:
            day = values[name]
            cleaned[name] = None if day is None else validation.close_date(day, field)
    starts = cleaned.get("starts_on", row.starts_on if row else None)
    ends = cleaned.get("ends_on", row.ends_on if row else None)
    if starts is not None and ends is not None and ends < starts:
        raise bad_input("endsOn", "endsOn must not be before startsOn.")
    if "budget" in values:
        budget = values["budget"]
        cleaned["budget_cents"] = (
            None if budget is None else validation.amount_cents(budget, "budget")
        )
    if "segment_id" in values:
        segment_id = values["segment_id"]
        if segment_id is not None:
            await referenced(ctx, Segment, segment_id, "segmentId", "segment")
        cleaned["segment_id"] = segment_id
    if "subject_template" in values:
        subject = values["subject_template"]
        if subject is not None:
            subject = validation.single_line(subject, "subjectTemplate", max_length=300)
            check_template(subject, "subjectTemplate")
        cleaned["subject_template"] = subject
    if "body_template" in values:
        body = values["body_template"]
        if body is not None:
            body = validation.text(body, "bodyTemplate", max_length=100_000)
            check_template(body, "bodyTemplate")
        cleaned["body_template"] = body
    if values.get("owner_id") is not None:
        owner = await referenced_user(ctx, values["owner_id"], "ownerId")
        await check_assignable(ctx, owner)
        cleaned["owner_id"] = owner.id
    planned_only = {"segment_id", "subject_template", "body_template", "channel"}
    if row is not None and row.status != CampaignStatus.PLANNED:
        changed = [
            name for name in planned_only & cleaned.keys() if cleaned[name] != getattr(row, name)
        ]
        if changed:
            raise conflict(
                f"A campaign that was launched keeps its {changed[0]}: it changes only while "
                "PLANNED.",
                field=camel(changed[0]),
            )
    return cleaned


async def create_campaign(ctx: RequestContext, values: dict[str, Any]) -> Campaign:
    viewer = _require_marketer(ctx)
    async with in_transaction():
        cleaned = await _clean(ctx, values, None)
        cleaned.setdefault("owner_id", viewer.id)
        return await Campaign.create(organization_id=viewer.organization_id, **cleaned)


async def update_campaign(
    ctx: RequestContext, campaign_id: int, values: dict[str, Any]
) -> Campaign:
    _require_marketer(ctx)
    async with in_transaction():
        row = await get_campaign(ctx, campaign_id, lock=True)
        if row.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
            raise conflict(f"This campaign is {row.status.value}: it cannot change.")
        row.update_from_dict(await _clean(ctx, values, row))
        await row.save()
        return row


async def set_status(ctx: RequestContext, campaign_id: int, status: CampaignStatus) -> Campaign:
    """Complete an active campaign, or cancel a planned, launching or active one (its launch's
    job stops at its next batch: the members not yet messaged stay PENDING)."""
    _require_marketer(ctx)
    allowed = {
        CampaignStatus.COMPLETED: (CampaignStatus.ACTIVE,),
        CampaignStatus.CANCELLED: (
            CampaignStatus.PLANNED,
            CampaignStatus.LAUNCHING,
            CampaignStatus.ACTIVE,
        ),
    }[status]
    async with in_transaction():
        row = await get_campaign(ctx, campaign_id, lock=True)
        if row.status not in allowed:
            raise conflict(f"A {row.status.value} campaign cannot become {status.value}.")
        row.status = status
        await row.save(update_fields=["status", "updated_at"])
    _progressed(ctx, row)
    return row


def _progressed(ctx: RequestContext, row: Campaign) -> None:
    """After a commit that changed the campaign's status: its live progress subscriptions."""
    if ctx.hub is not None:
        ctx.hub.announce(campaigns=[row.id])


async def list_campaigns(
    ctx: RequestContext,
    page: PageRequest,
    statuses: list[CampaignStatus] | None,
    updated_since: datetime | None = None,
) -> Page[Campaign]:
    query = scoped(ctx, Campaign)
    if updated_since is not None:
        query = query.filter(updated_at__gte=updated_since)
    if statuses:
        query = query.filter(status__in=statuses)
    return await paginate(query, page, BY_ID, descending=True)


# Costs


async def add_cost(ctx: RequestContext, campaign_id: int, values: dict[str, Any]) -> CampaignCost:
    viewer = _require_marketer(ctx)
    description = validation.single_line(values.get("description") or "", "description")
    amount = validation.amount_cents(values["amount"], "amount")
    incurred_on = validation.close_date(values.get("incurred_on") or date.today(), "incurredOn")
    async with in_transaction():
        row = await get_campaign(ctx, campaign_id, lock=True, field="campaignId")
        return await CampaignCost.create(
            campaign_id=row.id,
            description=description,
            amount_cents=amount,
            incurred_on=incurred_on,
            created_by_id=viewer.id,
        )


async def remove_cost(ctx: RequestContext, cost_id: int) -> CampaignCost:
    _require_marketer(ctx)
    organization_id = ctx.require_viewer().organization_id
    cost = await CampaignCost.filter(id=cost_id, campaign__organization_id=organization_id).first()
    if cost is None:
        raise not_found("cost")
    await cost.delete()
    return cost


# Launching

LAUNCH_JOB = "campaign.launch"


async def launch(ctx: RequestContext, campaign_id: int) -> Campaign:
    """Answer at once: the campaign becomes LAUNCHING and its job (resolvers/jobs.py) snapshots
    the segment, then messages the members still PENDING (EMAIL), batch by batch. Launching an
    ACTIVE campaign again resumes; launching a LAUNCHING one changes nothing; nobody is messaged
    twice."""
    viewer = _require_marketer(ctx)
    async with in_transaction():
        row = await get_campaign(ctx, campaign_id, lock=True)
        if row.status not in (CampaignStatus.PLANNED, CampaignStatus.LAUNCHING,
                              CampaignStatus.ACTIVE):  # fmt: skip
            raise conflict(f"A {row.status.value} campaign cannot be launched.")
        if row.status == CampaignStatus.PLANNED:
            await _check_launchable(row)
        if row.status != CampaignStatus.LAUNCHING:
            row.status = CampaignStatus.LAUNCHING
            row.launched_at = row.launched_at or datetime.now(UTC)
            await row.save(update_fields=["status", "launched_at", "updated_at"])
        await jobs.enqueue(
            LAUNCH_JOB,
            f"campaign:{row.id}",
            {"campaignId": row.id, "userId": viewer.id},
            organization_id=row.organization_id,
            attempts=ctx.settings.job_attempts,
            again=True,
        )
    jobs.wake()
    _progressed(ctx, row)
    return row


async def _check_launchable(row: Campaign) -> None:
    if row.segment_id is None:
        raise bad_input("segmentId", "Name the segment to send to before launching.")
    if row.channel == CampaignChannel.EMAIL and not (row.subject_template and row.body_template):
        raise bad_input(
            "bodyTemplate" if row.subject_template else "subjectTemplate",
            "An EMAIL campaign needs a subject and a body template before launching.",
        )


@jobs.handler(LAUNCH_JOB)
async def run_launch(work: jobs.Work) -> datetime | None:
    """The launch's job: snapshot (once), message the PENDING members batch by batch, deliver
    each batch over one SMTP connection, then come back when the next failed delivery is due.
    Safe to run again from the start after a crash: each step claims what it does."""
    campaign = await Campaign.get_or_none(id=work.job.payload["campaignId"])
    if campaign is None or campaign.status not in (CampaignStatus.LAUNCHING,
                                                   CampaignStatus.ACTIVE):  # fmt: skip
        return None  # cancelled, completed or deleted: stop here
    launcher = await User.get_or_none(id=work.job.payload["userId"], is_active=True)
    ctx = RequestContext(
        request_id=f"job-{work.job.id}", settings=work.config, viewer=launcher, hub=work.hub
    )
    if ctx.viewer is None:
        ctx.viewer = await User.get(id=campaign.owner_id)
    if not await CampaignMember.exists(campaign_id=campaign.id):
        if not await _snapshot(ctx, campaign):
            return None
        work.announce()
        work.progress(campaign.id)
    sender = await User.get(id=campaign.owner_id)
    config = work.config
    if campaign.channel == CampaignChannel.EMAIL:
        # What a run that died left half-sent is this run's to send (again: at least once). It
        # holds the job's lease: no other run of the job is sending them.
        await Message.filter(campaign_id=campaign.id, status=MessageStatus.SENDING).update(
            status=MessageStatus.OUTBOX, retry_at=datetime.now(UTC)
        )
        templates = (
            Template(campaign.subject_template or "", single_line=True),
            Template(campaign.body_template or ""),
        )
        # A batch is recorded in short transactions (RECORD_SIZE: requests wait behind them)
        # and delivered whole over the same SMTP connections.
        chunk = min(config.campaign_batch_size, RECORD_SIZE)
        # Each batch is delivered while the next one is recorded.
        delivering: asyncio.Task[None] | None = None
        try:
            while True:
                started = time.perf_counter()
                recorded = await _message_batch(
                    ctx, campaign, sender, templates, config.campaign_batch_size,
                    deliver=bool(config.smtp_url), courtesy=work.courtesy, chunk=chunk,
                )  # fmt: skip
                if recorded is None:  # cancelled or completed meanwhile: the rest stay PENDING
                    if delivering is not None:  # (what was recorded before is delivered)
                        await delivering
                    return None
                work.announce()
                work.progress(campaign.id)
                batch = recorded.messages
                log.debug("campaign %s: %s recorded in %.3f s", campaign.id, len(batch),
                          time.perf_counter() - started)  # fmt: skip
                if delivering is not None:
                    await delivering
                    delivering = None
                if config.smtp_url and batch:
                    delivering = asyncio.create_task(
                        deliver_batch(config, batch, sender, recorded.names, work.courtesy)
                    )
                    delivering.add_done_callback(lambda _: work.progress(campaign.id))
                if recorded.stopped:  # cancelled or completed during the batch: after its
                    if delivering is not None:  # recorded part is delivered, the launch stops
                        await delivering
                    return None
                if recorded.members < config.campaign_batch_size:
                    await work.courtesy.turn()
                    if not await CampaignMember.exists(
                        campaign_id=campaign.id, status=MemberStatus.PENDING
                    ):
                        break
            if delivering is not None:
                await delivering
                delivering = None
        finally:
            if delivering is not None:
                delivering.cancel()
                with contextlib.suppress(BaseException):
                    await delivering
    await Campaign.filter(id=campaign.id, status=CampaignStatus.LAUNCHING).update(
        status=CampaignStatus.ACTIVE, updated_at=datetime.now(UTC)
    )
    work.progress(campaign.id)
    if campaign.channel != CampaignChannel.EMAIL or not config.smtp_url:
        return None
    return await _retry_due(campaign, sender, config)


async def _retry_due(campaign: Campaign, sender: User, config: Any) -> datetime | None:
    """Deliver the campaign's messages whose retry is due; the time of the next one, if any."""
    while True:
        if not await Campaign.exists(id=campaign.id, status=CampaignStatus.ACTIVE):
            return None
        due = (
            await Message.filter(
                campaign_id=campaign.id,
                status=MessageStatus.OUTBOX,
                retry_at__lte=datetime.now(UTC),
            )
            .order_by("id")
            .limit(config.campaign_batch_size)
        )
        if not due:
            break
        await deliver_batch(config, due, sender)
    waiting = (
        await Message.filter(
            campaign_id=campaign.id, status=MessageStatus.OUTBOX, retry_at__isnull=False
        )
        .order_by("retry_at")
        .first()
    )
    return None if waiting is None else waiting.retry_at


async def _snapshot(ctx: RequestContext, campaign: Campaign) -> bool:
    """The segment's contacts become the members, in one transaction (all or none)."""
    async with in_transaction():
        row = await Campaign.filter(id=campaign.id).select_for_update().first()
        if row is None or row.status not in (CampaignStatus.LAUNCHING, CampaignStatus.ACTIVE):
            return False
        if await CampaignMember.exists(campaign_id=campaign.id):
            return True
        segment = await Segment.get(id=row.segment_id)
        matched = await matching(ctx, segment.conditions)
        contacts = await matched.order_by("id").values_list("id", flat=True)
        status = (
            MemberStatus.PENDING if row.channel == CampaignChannel.EMAIL else MemberStatus.INCLUDED
        )
        await CampaignMember.bulk_create(
            [CampaignMember(campaign_id=row.id, contact_id=pk, status=status) for pk in contacts],
            batch_size=500,
        )
        await Campaign.filter(id=row.id).update(members_count=len(contacts))
    return True


def _skip_reason(contact: Contact) -> str | None:
    if contact.deleted_at is not None:
        return "DELETED"
    if not contact.email:
        return "NO_EMAIL"
    if contact.do_not_contact:
        return "DO_NOT_CONTACT"
    return None


@dataclass
class Recorded:
    """A batch recorded: its members, the messages to deliver and their recipients' names."""

    members: int
    messages: list[Message]
    names: dict[int, str]
    # The campaign was cancelled or completed while the batch was recorded: the messages
    # recorded before are delivered, then the launch stops.
    stopped: bool = False


# What a launch reads of a member's contact and account (merge_values, _skip_reason).
CONTACT_FIELDS = ("id", "first_name", "last_name", "email", "title", "account_id", "deleted_at",
                  "do_not_contact")  # fmt: skip
ACCOUNT_FIELDS = ("id", "name", "industry", "city", "country")


async def _message_batch(
    ctx: RequestContext,
    campaign: Campaign,
    sender: User,
    templates: tuple[Template, Template],
    size: int,
    *,
    deliver: bool,
    courtesy: Courtesy,
    chunk: int,
) -> Recorded | None:
    """Claim up to `size` PENDING members and record their messages, in transactions of `chunk`
    with the campaign's counts. None when the campaign is no longer LAUNCHING or ACTIVE
    (cancelled or completed meanwhile) before any was recorded; `stopped` when it became so
    between two transactions (the messages recorded before are in the batch).

    The members, their contacts and accounts are read, and the messages rendered, before the
    transaction, which only writes (and re-checks the campaign and the claim): it is short,
    and on SQLite it holds the process's one connection, so requests wait behind it. The
    courtesy's turns between the reads let this process's requests go first."""
    await courtesy.turn()
    if not await Campaign.exists(id=campaign.id, status__in=LIVE):
        return None
    await courtesy.turn()
    members = (
        await CampaignMember.filter(campaign_id=campaign.id, status=MemberStatus.PENDING)
        .order_by("id")
        .limit(size)
        .values_list("id", "contact_id")
    )
    if not members:
        return Recorded(0, [], {})
    await courtesy.turn()
    contacts = {
        c.id: c
        for c in await Contact.filter(id__in=[pk for _, pk in members]).only(*CONTACT_FIELDS)
    }
    account_ids = {c.account_id for c in contacts.values() if c.account_id}
    accounts = {}
    if account_ids:
        await courtesy.turn()
        accounts = {a.id: a for a in await Account.filter(id__in=account_ids).only(*ACCOUNT_FIELDS)}
    subject, body = templates
    now = datetime.now(UTC)
    # (member id, contact id, its message, or None and why it is skipped)
    entries: list[tuple[int, int, Message | None, str | None]] = []
    for n, (member_id, contact_id) in enumerate(members, 1):
        contact = contacts[contact_id]
        reason = _skip_reason(contact)
        if reason is not None:
            entries.append((member_id, contact_id, None, reason))
            continue
        account = accounts.get(contact.account_id) if contact.account_id else None
        values = merge_values(contact, account, sender, campaign)
        draft = Message(
            organization_id=campaign.organization_id,
            sender_id=sender.id,
            to_contact_id=contact.id,
            to_email=contact.email,
            subject=subject.render(values)[:300],
            body=body.render(values),
            campaign_id=campaign.id,
            # With SMTP the job delivers it (the outbox's resending leaves it alone); without,
            # it waits in the outbox like any message.
            retry_at=now if deliver else None,
        )
        entries.append((member_id, contact_id, draft, None))
        if n % RENDER_TURN == 0:
            await courtesy.turn()
    await courtesy.turn()
    deals = await _open_deals_of({draft.to_contact_id for _, _, draft, _ in entries if draft})
    messages: list[Message] = []
    for start in range(0, len(entries), chunk):
        await courtesy.turn()
        done = await _record(ctx, campaign, entries[start : start + chunk], deals, courtesy)
        if done is None:
            stopped = True
            break
        messages += done
    else:
        stopped = False
    if messages and deliver:  # their ids, for their delivery
        await courtesy.turn()
        await _read_ids(campaign, messages)
    names = {
        message.to_contact_id: contacts[message.to_contact_id].full_name for message in messages
    }
    return Recorded(len(members), messages, names, stopped)


async def _record(
    ctx: RequestContext,
    campaign: Campaign,
    entries: list[tuple[int, int, Message | None, str | None]],
    deals: dict[int, list[tuple[Any, int]]],
    courtesy: Courtesy,
) -> list[Message] | None:
    """Claim these members and record their messages (and skips), in one transaction with the
    campaign's counts; the messages (without their ids unless an open deal was told of them:
    the caller reads them after). None when the campaign is no longer LAUNCHING or ACTIVE.

    Everything is built before the transaction, statements included (resolvers/prepared.py:
    SQL and values, between the job's turns), which only sends four statements (the
    campaign's counts, the messages, the claim of their members with each one's message, the
    skips), and the events of the open deals whose primary contact a member is: on SQLite
    requests wait for the process's connection meanwhile, and on either the job takes no turn
    inside it."""
    drafts = [draft for _, _, draft, _ in entries if draft is not None]
    messaged = [member_id for member_id, _, draft, _ in entries if draft is not None]
    skipped: dict[str, list[int]] = {}
    for member_id, _, _, reason in entries:
        if reason is not None:
            skipped.setdefault(reason, []).append(member_id)
    told = [draft for draft in drafts if draft.to_contact_id in deals]
    # Its statements are built before it, between the job's turns (resolvers/prepared.py).
    counts = prepared.update(
        Campaign.filter(id=campaign.id, status__in=LIVE).update(
            messaged_count=F("messaged_count") + len(drafts),
            skipped_count=F("skipped_count") + (len(entries) - len(drafts)),
            updated_at=datetime.now(UTC),
        )
    )
    claims: list[prepared.Prepared] = []
    insert = None
    if drafts:
        await courtesy.turn()
        insert = prepared.insert(Message, drafts)
        await courtesy.turn()
        # One message per member and campaign (this claim): found by its contact.
        claims.append(
            prepared.update(
                CampaignMember.filter(id__in=messaged, status=MemberStatus.PENDING).update(
                    status=MemberStatus.MESSAGED, message_id=_MemberMessage(campaign.id)
                )
            )
        )
    for reason, ids in skipped.items():
        claims.append(
            prepared.update(
                CampaignMember.filter(id__in=ids, status=MemberStatus.PENDING).update(
                    status=MemberStatus.SKIPPED, skip_reason=reason
                )
            )
        )
    await courtesy.turn()
    async with courtesy.exclusive(), in_transaction() as connection:
        # The campaign's row first, as cancelling locks it: still live, and its counts move.
        if not await prepared.run(connection, counts):
            return None
        if insert is not None:
            await prepared.run(connection, insert)
        claimed = 0
        for claim in claims:
            claimed += await prepared.run(connection, claim)
        if claimed != len(entries):  # another run took some: let it have the batch
            raise RuntimeError(f"campaign {campaign.id}: members claimed by another run")
        if told:
            await _read_ids(campaign, told)
            await _tell_deals_of(ctx, campaign, told, deals)
    return drafts


async def _read_ids(campaign: Campaign, messages: list[Message]) -> None:
    """The ids of a launch's messages recorded by bulk_create (which leaves them unset), found
    by their recipients: a campaign messages a contact once (a unique constraint). Those read
    already (an open deal was told of them) are not read again."""
    unread = [message for message in messages if message.id is None]
    if not unread:
        return
    ids = dict(
        await Message.filter(
            campaign_id=campaign.id, to_contact_id__in=[m.to_contact_id for m in unread]
        ).values_list("to_contact_id", "id")
    )
    for message in unread:
        message.id = ids[message.to_contact_id]


class _MemberMessage(Expression):
    """In an UPDATE of campaign members: each one's message of the campaign (by its contact;
    one at most, which the unique constraint on the message's campaign and recipient keeps and
    whose index finds it)."""

    def __init__(self, campaign_id: int) -> None:
        self.campaign_id = int(campaign_id)

    def resolve(self, resolve_context: ResolveContext) -> ResolveResult:
        message, member = Message._meta.db_table, CampaignMember._meta.db_table
        return ResolveResult(
            term=RawSQL(
                f'(SELECT "id" FROM "{message}" WHERE "campaign_id" = {self.campaign_id} '
                f'AND "to_contact_id" = "{member}"."contact_id")'
            )
        )


LIVE = (CampaignStatus.LAUNCHING, CampaignStatus.ACTIVE)
# Members whose messages are rendered between two of the job's turns: about 0.1 ms of the
# loop each (a Message built, two templates rendered), so that a request that arrives
# meanwhile waits well under a millisecond (at 25 it waited 0.6 ms, up to 4 on a busy machine).
RENDER_TURN = 5
# Members recorded per transaction (a batch is delivered whole): on SQLite a transaction holds
# the process's one connection, on either it runs on the loop that answers requests.
RECORD_SIZE = 20


async def _open_deals_of(contact_ids: set[int]) -> dict[int, list[tuple[Any, int]]]:
    """The open leads and opportunities these contacts are the primary contact of, by contact:
    (kind, id). Read before a batch's transactions (which stay short)."""
    if not contact_ids:
        return {}
    open_leads = await Lead.filter(
        contact_id__in=list(contact_ids),
        deleted_at__isnull=True,
        status__in=[LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.QUALIFIED],
    ).values_list("id", "contact_id")
    open_deals = await Opportunity.filter(
        contact_id__in=list(contact_ids), deleted_at__isnull=True, status=OpportunityStatus.OPEN
    ).values_list("id", "contact_id")
    deals: dict[int, list[tuple[Any, int]]] = {}
    for kind, rows in ((LEAD, open_leads), (OPPORTUNITY, open_deals)):
        for pk, contact_id in rows:
            deals.setdefault(contact_id, []).append((kind, pk))
    return deals


async def _tell_deals_of(
    ctx: RequestContext,
    campaign: Campaign,
    messages: list[Message],
    deals: dict[int, list[tuple[Any, int]]],
) -> None:
    """An event on the open leads and opportunities (`_open_deals_of`) whose primary contact
    was written to."""
    for message in messages:
        details = {
            "campaign_id": campaign.id,
            "message_id": message.id,
            "contact_id": message.to_contact_id,
            "subject": message.subject,
        }
        for kind, record_id in deals.get(message.to_contact_id, ()):
            await record_event(
                ctx,
                kind,
                record_id,
                EventKind.CAMPAIGN_MESSAGE_SENT,
                details=details,
            )


async def _tell_deals(
    ctx: RequestContext, contact_id: int, kind: EventKind, details: dict[str, Any]
) -> None:
    """An event on the open leads and opportunities this contact is the primary contact of:
    their followers learn what the campaign did with their contact."""
    open_leads = await Lead.filter(
        contact_id=contact_id,
        deleted_at__isnull=True,
        status__in=[LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.QUALIFIED],
    ).values_list("id", flat=True)
    open_deals = await Opportunity.filter(
        contact_id=contact_id, deleted_at__isnull=True, status=OpportunityStatus.OPEN
    ).values_list("id", flat=True)
    for lead_id in open_leads:
        await record_event(ctx, LEAD, lead_id, kind, details=details)  # type: ignore[arg-type]
    for opportunity_id in open_deals:
        await record_event(ctx, OPPORTUNITY, opportunity_id, kind, details=details)  # type: ignore[arg-type]


# Responses


async def mark_response(
    ctx: RequestContext, campaign_id: int, contact_id: int, responded: bool
) -> CampaignMember:
    """Admins, managers, and whoever manages the contact's owner (its owner included)."""
    async with in_transaction():
        campaign = await get_campaign(ctx, campaign_id, field="campaignId")
        member = (
            await CampaignMember.filter(campaign_id=campaign.id, contact_id=contact_id)
            .select_for_update()
            .first()
        )
        if member is None:
            raise bad_input("contactId", "This contact is not a member of the campaign.")
        contact = await Contact.get(id=contact_id)
        viewer = ctx.require_viewer()
        if viewer.role == Role.SELLER and not await manages_owner(ctx, contact.owner_id):
            raise forbidden("Sellers record the responses of their own contacts.")
        was = member.responded_at is not None
        if was == responded:
            return member
        member.responded_at = datetime.now(UTC) if responded else None
        await member.save(update_fields=["responded_at"])
        details = {"campaign_id": campaign.id, "contact_id": contact_id, "responded": responded}
        await _tell_deals(ctx, contact_id, EventKind.CAMPAIGN_RESPONSE, details)
        return member


async def list_members(
    ctx: RequestContext, campaign_id: int, page: PageRequest, statuses: list[MemberStatus] | None
) -> Page[CampaignMember]:
    campaign = await get_campaign(ctx, campaign_id, field=None)
    query = CampaignMember.filter(campaign_id=campaign.id)
    if statuses:
        query = query.filter(status__in=statuses)
    return await paginate(query, page, BY_ID)


# Metrics


@dataclass
class Metrics:
    currency: str
    members: int
    messaged: int
    messages_sent: int
    messages_waiting: int
    messages_failed: int
    skipped_no_email: int
    skipped_do_not_contact: int
    skipped_deleted: int
    responses: int
    leads: int
    opportunities: int
    pipeline_cents: int
    won_cents: int
    other_currency_opportunities: int
    cost_cents: int
    budget_cents: int | None

    @property
    def response_rate(self) -> Decimal | None:
        """Responses per member, in percent."""
        return _ratio(self.responses * 100, self.members, "0.01")

    @property
    def cost_per_lead(self) -> Decimal | None:
        per_lead = _ratio(self.cost_cents, self.leads, "1")
        return None if per_lead is None else from_cents(int(per_lead))

    @property
    def roi(self) -> Decimal | None:
        """(won - cost) / cost, as a ratio (1.5 is 150 percent)."""
        return _ratio(self.won_cents - self.cost_cents, self.cost_cents, "0.0001")


def _ratio(numerator: int, denominator: int, places: str) -> Decimal | None:
    if denominator == 0:
        return None
    exact = Decimal(numerator) / Decimal(denominator)
    return exact.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)


async def metrics(ctx: RequestContext, campaign: Campaign) -> Metrics:
    organization = await Organization.get(id=campaign.organization_id)
    members = dict(
        await CampaignMember.filter(campaign_id=campaign.id)
        .annotate(count=Count("id"))
        .group_by("status")
        .values_list("status", "count")
    )
    skipped = dict(
        await CampaignMember.filter(campaign_id=campaign.id, status=MemberStatus.SKIPPED)
        .annotate(count=Count("id"))
        .group_by("skip_reason")
        .values_list("skip_reason", "count")
    )
    messages = dict(
        await Message.filter(campaign_id=campaign.id)
        .annotate(count=Count("id"))
        .group_by("status")
        .values_list("status", "count")
    )
    responses = await CampaignMember.filter(
        campaign_id=campaign.id, responded_at__isnull=False
    ).count()
    # Sourced leads and opportunities: those the viewer may read (no private amount leaks).
    leads = await (await LEADS.query(ctx)).filter(campaign_id=campaign.id).count()
    sourced = (await OPPORTUNITIES.query(ctx)).filter(campaign_id=campaign.id)
    amounts = {
        (currency, status): int(total or 0)
        for currency, status, total in await sourced.annotate(total=Sum("amount_cents"))
        .group_by("currency", "status")
        .values_list("currency", "status", "total")
    }
    counted = await sourced.count()
    elsewhere = await sourced.filter(~Q(currency=organization.currency)).count()
    costs = await CampaignCost.filter(campaign_id=campaign.id).values_list(
        "amount_cents", flat=True
    )
    currency = organization.currency
    return Metrics(
        currency=currency,
        members=sum(members.values()),
        messaged=members.get(MemberStatus.MESSAGED, 0),
        messages_sent=messages.get(MessageStatus.SENT, 0),
        messages_waiting=messages.get(MessageStatus.OUTBOX, 0)
        + messages.get(MessageStatus.SENDING, 0),
        messages_failed=messages.get(MessageStatus.FAILED, 0),
        skipped_no_email=skipped.get("NO_EMAIL", 0),
        skipped_do_not_contact=skipped.get("DO_NOT_CONTACT", 0),
        skipped_deleted=skipped.get("DELETED", 0),
        responses=responses,
        leads=leads,
        opportunities=counted,
        pipeline_cents=amounts.get((currency, OpportunityStatus.OPEN), 0),
        won_cents=amounts.get((currency, OpportunityStatus.WON), 0),
        other_currency_opportunities=elsewhere,
        cost_cents=sum(costs),  # type: ignore[arg-type]
        budget_cents=campaign.budget_cents,
    )
