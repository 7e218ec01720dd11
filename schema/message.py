"""Messages composed from a lead or opportunity: the draft, sending, the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import Message as MessageRow
from models import MessageStatus
from resolvers import access
from resolvers import message as messages
from resolvers.deal_kinds import KINDS
from schema.base import (
    Connection,
    Info,
    connection,
    context,
    decode_id,
    in_utc,
    page_request,
    pk_of,
    pks_of,
)
from schema.contact import Contact, load_contact
from schema.deal import NoRecipientReason
from schema.records import Declared, column, private_row, record
from schema.user import User, load_user


@strawberry.type(description="A message ready to edit and send: to the record's primary contact.")
class MessageDraft:
    to: Contact | None = strawberry.field(
        description="The default recipient, the primary contact; null when unreachable."
    )
    cc: list[Contact] = strawberry.field(
        description="The participants one may copy: those with an email who may be contacted."
    )
    subject: str
    body: str
    problem: NoRecipientReason | None = strawberry.field(
        description="Why there is no recipient: no primary contact, no email, do-not-contact."
    )
    problem_message: str | None = strawberry.field(description="The problem, for people.")
    context: JSON = strawberry.field(
        description="The record it is composed from: recordId, recordType, title, account."
    )


@record(MessageRow, read=access.MESSAGES)
@strawberry.type(description="An email sent from a lead or opportunity.")
class Message(relay.Node, Declared):
    id: relay.NodeID[int]
    to_email: str
    cc: JSON = column(convert=JSON, description='Copied contacts: [{"contactId", "email"}].')
    subject: str
    body: str
    status: MessageStatus
    attempts: int = strawberry.field(description="Delivery attempts made.")
    last_error: str | None = strawberry.field(description="Why the last attempt failed.")
    sent_at: datetime | None
    created_at: datetime
    row: strawberry.Private[MessageRow] = private_row()

    @strawberry.field
    async def sender(self, info: Info) -> User:
        return await load_user(info, self.row.sender_id)

    @strawberry.field(description="The recipient, unless deleted since.")
    async def to(self, info: Info) -> Contact | None:
        return await load_contact(info, self.row.to_contact_id)


@strawberry.input(description="A message to send from a lead or opportunity.")
class SendMessageInput:
    record_id: strawberry.ID
    subject: str
    body: str
    to_contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the record's primary contact."
    )
    cc_contact_ids: list[strawberry.ID] | None = None


@strawberry.type
class MessageQueries:
    @strawberry.field(
        description="A draft message from a lead or opportunity to its primary contact."
    )
    async def compose_message(self, info: Info, record_id: strawberry.ID) -> MessageDraft:
        type_name, pk = decode_id(record_id, "recordId", "Lead", "Opportunity")
        draft = await messages.compose(context(info), KINDS[type_name], pk)
        return MessageDraft(
            to=None if draft.to is None else Contact.from_row(draft.to),
            cc=[Contact.from_row(contact) for contact in draft.cc],
            subject=draft.subject,
            body=draft.body,
            problem=None if draft.problem is None else NoRecipientReason(draft.problem[0]),
            problem_message=None if draft.problem is None else draft.problem[1],
            context=JSON(draft.context),
        )

    @strawberry.field(
        description="The viewer's messages (admins: everyone's), newest first. "
        "statuses: [OUTBOX, FAILED] is the outbox."
    )
    async def messages(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        statuses: list[MessageStatus] | None = None,
        updated_since: Annotated[
            datetime | None, strawberry.argument(description="Changed at or after this time.")
        ] = None,
    ) -> Connection[Message]:
        page = await messages.list_messages(
            context(info),
            page_request(info, first, after, last, before),
            statuses,
            in_utc(updated_since),
        )
        return connection(page, Message.from_row)


@strawberry.type
class MessageMutations:
    @strawberry.mutation(
        description="Send a message from a lead or opportunity (its readers): records it and an "
        "EMAIL activity, then delivers it by SMTP when configured (else it stays in the outbox)."
        " Contacts without an email or marked do-not-contact are refused."
    )
    async def send_message(self, info: Info, input: SendMessageInput) -> Message:
        type_name, pk = decode_id(input.record_id, "recordId", "Lead", "Opportunity")
        values = {
            "subject": input.subject,
            "body": input.body,
            "to_contact_id": None
            if input.to_contact_id is None
            else pk_of(input.to_contact_id, "toContactId", "Contact"),
            "cc_contact_ids": pks_of(input.cc_contact_ids, "ccContactIds", "Contact"),
        }
        row = await messages.send(context(info), KINDS[type_name], pk, values)
        return Message.from_row(row)

    @strawberry.mutation(
        description="Deliver again a FAILED message, or one waiting in the OUTBOX, once an SMTP "
        "server is configured (its sender, admins). CONFLICT for a message sent or being sent, "
        "or without SMTP_URL."
    )
    async def retry_message(self, info: Info, id: strawberry.ID) -> Message:
        row = await messages.retry(context(info), pk_of(id, "id", "Message"))
        return Message.from_row(row)
