"""Messages from a lead or opportunity: a draft to its primary contact (the default recipient),
then sending it, which records the message and an EMAIL activity and delivers it by SMTP when
SMTP_URL is set (else it waits in the outbox)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import MessageError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any
from urllib.parse import unquote, urlparse

import aiosmtplib
from strawberry import relay
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from config import Settings
from models import (
    Activity,
    ActivityAttendee,
    ActivityKind,
    ActivityStatus,
    Campaign,
    Contact,
    EventKind,
    Message,
    MessageStatus,
    User,
)
from resolvers import lifecycle, prepared, validation
from resolvers.access import MESSAGES
from resolvers.context import RequestContext
from resolvers.deal import get_readable
from resolvers.deal_kinds import DealKind
from resolvers.errors import bad_input, conflict, not_found
from resolvers.events import global_id, record_event
from resolvers.foreground import Courtesy
from resolvers.pagination import BY_ID, Page, PageRequest, paginate
from resolvers.records import referenced_contact

log = logging.getLogger("crm.mail")

NO_PRIMARY_CONTACT = "NO_PRIMARY_CONTACT"
HAS_NO_EMAIL = "PRIMARY_CONTACT_HAS_NO_EMAIL"
DO_NOT_CONTACT = "PRIMARY_CONTACT_DO_NOT_CONTACT"
DELIVERY_ATTEMPTS = 3
RETRY_SECONDS = (0.5, 2.0)


def why_unreachable(contact: Contact | None) -> tuple[str, str] | None:
    """Why a record's primary contact cannot be written to: (reason code, message), or None."""
    if contact is None:
        return NO_PRIMARY_CONTACT, "This record has no primary contact: set one to write to."
    if not contact.email:
        return HAS_NO_EMAIL, f"{contact.full_name} has no email address."
    if contact.do_not_contact:
        return DO_NOT_CONTACT, f"{contact.full_name} asked not to be contacted."
    return None


@dataclass
class Draft:
    to: Contact | None
    cc: list[Contact]
    subject: str
    body: str
    problem: tuple[str, str] | None
    context: dict[str, Any]


async def compose(ctx: RequestContext, kind: DealKind[Any], record_id: int) -> Draft:
    row = await get_readable(ctx, kind, record_id)
    loaders = ctx.loaders
    contact = await loaders.contact.load(row.contact_id) if row.contact_id else None
    problem = why_unreachable(contact)
    links = await loaders.participants(kind).load(row.id)
    participants = await loaders.contact.load_many([link.contact_id for link in links])
    cc = [p for p in participants if p is not None and p.email and not p.do_not_contact]
    title = getattr(row, kind.title_field)
    account = await loaders.account.load(row.account_id) if row.account_id else None
    greeting = f"Hello {contact.first_name},\n\n" if contact is not None else ""
    return Draft(
        to=None if problem else contact,
        cc=cc,
        subject=(title if account is None else f"{account.name}: {title}")[:300],
        body=greeting,
        problem=problem,
        context={
            "recordId": global_id(kind.name, row.id),
            "recordType": kind.name,
            "title": title,
            "account": None if account is None else account.name,
        },
    )


async def _recipient(ctx: RequestContext, contact_id: int, field: str) -> Contact:
    contact = await referenced_contact(ctx, contact_id, field)
    problem = why_unreachable(contact)
    if problem is not None:
        raise bad_input(field, problem[1].replace("This record has no primary contact", "No one"))
    return contact


async def send(
    ctx: RequestContext,
    kind: DealKind[Any],
    record_id: int,
    values: dict[str, Any],
) -> Message:
    viewer = ctx.require_viewer()
    subject = validation.single_line(values.get("subject") or "", "subject", max_length=300)
    body = validation.text(values.get("body") or "", "body", max_length=100_000)
    async with in_transaction():
        row = await get_readable(ctx, kind, record_id)
        to_id = values.get("to_contact_id") or row.contact_id
        if to_id is None:
            raise bad_input("toContactId", "This record has no primary contact: name a recipient.")
        to = await _recipient(ctx, to_id, "toContactId")
        cc = [
            await _recipient(ctx, pk, "ccContactIds")
            for pk in dict.fromkeys(values.get("cc_contact_ids") or [])
            if pk != to.id
        ]
        now = datetime.now(UTC)
        activity = await Activity.create(
            organization_id=viewer.organization_id,
            kind=ActivityKind.EMAIL,
            subject=subject[:200],
            notes=body,
            starts_at=now,
            scheduled_at=now,
            status=ActivityStatus.DONE,
            closed_at=now,
            owner_id=viewer.id,
            account_id=row.account_id,
            contact_id=to.id,
            **{kind.comment_field: row.id},
        )
        await ActivityAttendee.bulk_create(
            [ActivityAttendee(activity_id=activity.id, contact_id=c.id) for c in (to, *cc)]
        )
        message = await Message.create(
            organization_id=viewer.organization_id,
            sender_id=viewer.id,
            to_contact_id=to.id,
            to_email=to.email,
            cc=[{"contactId": global_id("Contact", c.id), "email": c.email} for c in cc],
            subject=subject,
            body=body,
            activity_id=activity.id,
            **{kind.comment_field: row.id},
        )
        details = {
            "message_id": message.id,
            "activity_id": activity.id,
            "contact_id": to.id,
            "subject": subject,
        }
        await record_event(ctx, kind, row.id, EventKind.MESSAGE_SENT, details=details)
        await lifecycle.refresh_contacts(ctx, [to.id, *(c.id for c in cc)])
    if ctx.settings.smtp_url:
        await deliver(ctx.settings, message, viewer)
    return message


async def retry(ctx: RequestContext, message_id: int) -> Message:
    """Deliver again a message that failed, or that waits in the outbox (its sender, admins)."""
    message = await (await MESSAGES.query(ctx)).filter(id=message_id).first()
    if message is None:
        raise not_found("message")
    if not ctx.settings.smtp_url:
        raise conflict("No SMTP server is configured (SMTP_URL): the message stays in the outbox.")
    sender = await User.get(id=message.sender_id)
    if not await deliver(ctx.settings, message, sender):
        raise conflict(
            f"This message is {message.status.value}: only OUTBOX and FAILED ones are retried."
        )
    return message


async def send_outbox(
    settings: Settings, *, include_failed: bool, stale_after: timedelta
) -> dict[str, int]:
    """Deliver through `settings`' SMTP server what waits in the outbox (and, with
    include_failed, what failed), and what a process that stopped while sending left behind
    after `stale_after`. For operators. Counts only the messages this run delivered."""
    statuses = (MessageStatus.OUTBOX, *([MessageStatus.FAILED] if include_failed else []))
    stale = datetime.now(UTC) - stale_after
    await Message.filter(status=MessageStatus.SENDING, updated_at__lt=stale).update(
        status=MessageStatus.OUTBOX
    )
    outcome = {status.value: 0 for status in MessageStatus}
    # A campaign's message waiting for its next attempt (retry_at) is its campaign job's.
    waiting = Message.filter(status__in=statuses, retry_at__isnull=True)
    for message in await waiting.order_by("id"):
        sender = await User.get(id=message.sender_id)
        if await deliver(settings, message, sender, claim_from=statuses):
            outcome[message.status.value] += 1
    return outcome


async def _names(message: Message) -> dict[str, str]:
    """The recipients' names, by email address, as their contacts say now."""
    ids = {message.to_contact_id}
    for entry in message.cc:
        _, pk = relay.from_base64(entry["contactId"])
        ids.add(int(pk))
    people = await Contact.filter(id__in=ids, organization_id=message.organization_id)
    return {person.email: person.full_name for person in people if person.email}


# What building a message raises for a header it cannot write (a line break, an address the
# package will not parse): the message is Unsendable, recorded as FAILED.
UNSENDABLE = (ValueError, MessageError)


def _email(
    message: Message, sender_name: str, reply_to: str, sent_from: str, names: dict[str, str]
) -> EmailMessage:
    email = EmailMessage()
    email["Date"] = format_datetime(datetime.now(UTC))  # RFC 5322: when it was handed over
    email["From"] = formataddr((sender_name, sent_from))
    email["Reply-To"] = reply_to
    # Address objects, not formataddr's text: a name with a comma and a non-ASCII letter
    # ("Lovelace, née Byron") comes out encoded, quoted and whole.
    email["To"] = Address(names.get(message.to_email, ""), addr_spec=message.to_email)
    if message.cc:
        email["Cc"] = [
            Address(names.get(entry["email"], ""), addr_spec=entry["email"]) for entry in message.cc
        ]
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=sent_from.rpartition("@")[2] or None)
    email["X-CRM-Message"] = global_id("Message", message.id) or ""
    email.set_content(message.body)
    return email


def _campaign_email(
    message: Message,
    sender_name: str,
    reply_to: str,
    sent_from: str,
    to_name: str,
    *,
    date: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """A campaign's message: the same headers as `_email` (no Cc), the body in UTF-8 and
    base64. The bytes are those the email package's compat32 classes make
    (`_campaign_email_by_package`), written out directly when every header is short printable
    ASCII (nothing to fold or encode: a launch builds thousands, and the package's folding was
    a third of a launch's CPU); otherwise built by the package."""
    for value in (message.to_email, message.subject, reply_to, to_name, sender_name, sent_from):
        if "\n" in value or "\r" in value:
            raise ValueError("a header holds a line break")
    date = date or format_datetime(datetime.now(UTC))  # RFC 5322: when it was handed over
    message_id = message_id or make_msgid(domain=sent_from.rpartition("@")[2] or None)
    headers = (
        ("Date", date),
        ("From", formataddr((sender_name, sent_from))),
        ("Reply-To", reply_to),
        ("To", formataddr((to_name, message.to_email))),
        ("Subject", message.subject),
        ("Message-ID", message_id),
        ("X-CRM-Message", global_id("Message", message.id) or ""),
    )
    if not all(_plain_header(name, value) for name, value in headers):
        return _campaign_email_by_package(message, headers)
    lines = [PLAIN_UTF8_BASE64]
    lines.extend(f"{name}: {value}\n" for name, value in headers)
    lines.append("\n")
    return "".join(lines).encode("ascii") + base64.encodebytes(message.body.encode("utf-8"))


# The MIME headers MIMEText(body, "plain", "utf-8") starts with.
PLAIN_UTF8_BASE64 = (
    'Content-Type: text/plain; charset="utf-8"\nMIME-Version: 1.0\n'
    "Content-Transfer-Encoding: base64\n"
)


def _plain_header(name: str, value: str) -> bool:
    """A header compat32 writes as it is: printable ASCII, single spaces, on one line of at
    most 78 characters."""
    return (
        len(name) + 2 + len(value) <= 78
        and value.isascii()
        and value.isprintable()
        and "  " not in value
        and value == value.strip()
    )


def _campaign_email_by_package(message: Message, headers: tuple[tuple[str, str], ...]) -> bytes:
    """What `_campaign_email` makes, with the email package's compat32 classes (a fourteenth
    of the cost of the default policy, which parses every address header). formataddr quotes
    a name with a comma and encodes one with a non-ASCII letter, as Address does."""
    email = MIMEText(message.body, "plain", "utf-8")
    for name, value in headers:
        if name == "Subject" and not value.isascii():
            value = Header(value, "utf-8").encode()
        email[name] = value
    return email.as_bytes()


RETRIABLE = (MessageStatus.OUTBOX, MessageStatus.FAILED)


async def _claim(message: Message, statuses: tuple[MessageStatus, ...]) -> bool:
    """Mark the message SENDING unless another process took it first: one sender per message."""
    claimed = await Message.filter(id=message.id, status__in=statuses).update(
        status=MessageStatus.SENDING, updated_at=datetime.now(UTC)
    )
    if claimed:
        message.status = MessageStatus.SENDING
    return claimed == 1


async def deliver(
    settings: Settings,
    message: Message,
    sender: User,
    *,
    claim_from: tuple[MessageStatus, ...] = RETRIABLE,
) -> bool:
    """Hand the message to the SMTP server of `settings` (SMTP_URL, SMTP_FROM), retrying a
    failed attempt; record the outcome. Called after the commit: a slow or failing server never
    holds the transaction. False, and nothing done, when the message is not in one of
    `claim_from` (say, another process is sending it)."""
    was = message.status
    if not await _claim(message, claim_from):
        await message.refresh_from_db()
        return False
    url = urlparse(settings.smtp_url)
    names = await _names(message)
    try:
        email = _email(message, sender.full_name, sender.email, settings.smtp_from, names)
    except UNSENDABLE as error:  # a header the email library refuses (after the commit: record it)
        message.status, message.last_error = MessageStatus.FAILED, f"Unsendable: {error}"
        await message.save(update_fields=["status", "last_error", "updated_at"])
        return True
    for attempt in range(DELIVERY_ATTEMPTS):
        message.attempts += 1
        try:
            await aiosmtplib.send(
                email,
                hostname=url.hostname or "localhost",
                port=url.port or (465 if url.scheme == "smtps" else 25),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=url.scheme == "smtps",
                start_tls=url.scheme == "smtp+starttls",
                timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            message.last_error = f"{type(error).__name__}: {error}"[:1000]
            log.warning(
                "delivery of message %s failed (attempt %s): %s", message.id, attempt + 1, error
            )
            if attempt + 1 < DELIVERY_ATTEMPTS:
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            continue
        message.status = MessageStatus.SENT
        message.sent_at = datetime.now(UTC)
        message.last_error = None  # type: ignore[assignment]
        break
    else:
        message.status = MessageStatus.FAILED
    async with in_transaction():
        await message.save(
            update_fields=["status", "attempts", "last_error", "sent_at", "updated_at"]
        )
        if message.campaign_id is not None:
            await _count_outcome(message.campaign_id, was, message.status)
    return True


async def _count_outcome(campaign_id: int, was: MessageStatus, now: MessageStatus) -> None:
    """Keep a campaign's sent and failed counts in step with a message delivered by hand."""
    change = {
        status: (1 if status == now else 0) - (1 if status == was else 0)
        for status in (MessageStatus.SENT, MessageStatus.FAILED)
    }
    if any(change.values()):
        await Campaign.filter(id=campaign_id).update(
            sent_count=F("sent_count") + change[MessageStatus.SENT],
            failed_count=F("failed_count") + change[MessageStatus.FAILED],
        )


def smtp_client(config: Settings) -> aiosmtplib.SMTP:
    """A client for SMTP_URL, to send several messages over one connection."""
    url = urlparse(config.smtp_url)
    return aiosmtplib.SMTP(
        hostname=url.hostname or "localhost",
        port=url.port or (465 if url.scheme == "smtps" else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=url.scheme == "smtps",
        start_tls=url.scheme == "smtp+starttls",
        timeout=10,
    )


async def deliver_batch(
    config: Settings,
    messages: list[Message],
    sender: User,
    names: dict[int, str] | None = None,
    courtesy: Courtesy | None = None,
) -> None:
    """Deliver a campaign's messages over SMTP_CONNECTIONS connections at once (each sends its
    share of the batch, one after the other), then record every outcome in one
    transaction: SENT; or, when an attempt fails, back to the OUTBOX until `retry_at` (doubling
    from MESSAGE_RETRY_BASE_SECONDS, with jitter), and FAILED with the reason once
    MESSAGE_ATTEMPTS attempts failed. The campaign's sent and failed counts move with them.
    The caller holds the campaign's job: nobody else sends these messages meanwhile. `names`:
    the recipients' names by contact id, when the caller has just read them; `courtesy`: the
    job's turns, taken before each message is sent (resolvers/foreground.py)."""
    if not messages:
        return
    ids = [message.id for message in messages]
    waiting = set(
        await Message.filter(id__in=ids, status=MessageStatus.OUTBOX).values_list("id", flat=True)
    )
    messages = [message for message in messages if message.id in waiting]  # not sent by hand
    if not messages:
        return
    await Message.filter(id__in=list(waiting), status=MessageStatus.OUTBOX).update(
        status=MessageStatus.SENDING, updated_at=datetime.now(UTC)
    )
    errors: dict[int, str] = {}
    if names is None:  # the recipients' names, as their contacts say now (To: names them)
        contacts = await Contact.filter(id__in={message.to_contact_id for message in messages})
        names = {contact.id: contact.full_name for contact in contacts}
    lanes = max(1, min(config.smtp_connections, len(messages)))
    await asyncio.gather(
        *(_send_over_one_connection(messages[lane::lanes], sender, config, names, errors,
                                    courtesy)
          for lane in range(lanes))
    )  # fmt: skip
    now = datetime.now(UTC)
    sent = [message.id for message in messages if message.id not in errors]
    # The outcomes' statements, built before their transaction (resolvers/prepared.py) and
    # between the job's turns: the transaction only sends them.
    statements: list[prepared.Prepared] = []
    if sent:
        statements.append(
            prepared.update(
                Message.filter(id__in=sent).update(
                    status=MessageStatus.SENT,
                    sent_at=now,
                    last_error=None,
                    retry_at=None,
                    attempts=F("attempts") + 1,
                    updated_at=now,
                )  # fmt: skip
            )
        )
    failed = 0
    for message in messages:
        if message.id not in errors:
            continue
        attempts = message.attempts + 1
        final = attempts >= config.message_attempts
        failed += final
        log.warning("delivery of message %s failed (attempt %s): %s",
                    message.id, attempts, errors[message.id])  # fmt: skip
        statements.append(
            prepared.update(
                Message.filter(id=message.id).update(
                    status=MessageStatus.FAILED if final else MessageStatus.OUTBOX,
                    attempts=attempts,
                    last_error=errors[message.id],
                    retry_at=None if final else now + retry_delay(attempts, config),
                    updated_at=now,
                )
            )
        )
    campaign_id = messages[0].campaign_id
    if campaign_id is not None and (sent or failed):
        if courtesy is not None:
            await courtesy.turn()
        statements.append(
            prepared.update(
                Campaign.filter(id=campaign_id).update(
                    sent_count=F("sent_count") + len(sent),
                    failed_count=F("failed_count") + failed,
                )
            )
        )
    if courtesy is not None:
        await courtesy.turn()
    # (The job's other tasks wait for this transaction while requests are recent.)
    holding = courtesy.exclusive() if courtesy is not None else contextlib.nullcontext()
    async with holding, in_transaction() as connection:
        for statement in statements:
            await prepared.run(connection, statement)


async def _send_over_one_connection(
    messages: list[Message],
    sender: User,
    config: Settings,
    names: dict[int, str],
    errors: dict[int, str],
    courtesy: Courtesy | None = None,
) -> None:
    """Send these messages over one SMTP connection (reconnecting after a failure); each
    failure's reason goes into `errors`."""
    client = smtp_client(config)
    connected = False
    for message in messages:
        if courtesy is not None:
            await courtesy.turn()
        try:
            data = _campaign_email(
                message,
                sender.full_name,
                sender.email,
                config.smtp_from,
                names.get(message.to_contact_id, ""),  # type: ignore[arg-type]
            )
        except UNSENDABLE as error:
            errors[message.id] = f"Unsendable: {error}"
            continue
        try:
            if not connected:
                await client.connect()
                connected = True
            await client.sendmail(config.smtp_from, [message.to_email], data)
        except aiosmtplib.SMTPRecipientsRefused as error:
            errors[message.id] = f"{type(error).__name__}: {error}"[:1000]
        except (aiosmtplib.SMTPException, OSError) as error:
            errors[message.id] = f"{type(error).__name__}: {error}"[:1000]
            if connected:
                with contextlib.suppress(Exception):
                    client.close()
                connected = False
    if connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()


def retry_delay(attempts: int, config: Settings) -> timedelta:
    base = config.message_retry_base_seconds * 2 ** (attempts - 1)
    return timedelta(seconds=base * (0.5 + random.random() / 2))


async def list_messages(
    ctx: RequestContext,
    page: PageRequest,
    statuses: list[MessageStatus] | None,
    updated_since: datetime | None = None,
) -> Page[Message]:
    """Newest first; with statuses OUTBOX and FAILED, the outbox."""
    query = await MESSAGES.query(ctx)
    if updated_since is not None:
        query = query.filter(updated_at__gte=updated_since)
    if statuses:
        query = query.filter(status__in=statuses)
    return await paginate(query, page, BY_ID, descending=True)
