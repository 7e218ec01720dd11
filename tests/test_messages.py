"""Messages from a lead or opportunity: the draft to the primary contact, sending, the outbox.

Delivery is tested against a real SMTP server (aiosmtpd) on loopback, with a server process
configured with SMTP_URL; the suite's own server has none, so its messages stay in the outbox.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from models import Message, MessageStatus
from tests.apps import AppServer
from tests.helpers import UPDATE, create_contact, create_lead, create_opportunity, pk
from tests.processes import ROOT, free_port
from tests.test_deals import ADD_PARTICIPANT, SET_PRIMARY
from tests.test_events import history

COMPOSE = """query($id: ID!) {
  composeMessage(recordId: $id) {
    to { id email } cc { id } subject body problem problemMessage context
  }
}"""
SEND = """mutation($input: SendMessageInput!) {
  sendMessage(input: $input) {
    id toEmail cc subject body status attempts lastError sentAt sender { id } to { id }
  }
}"""
MESSAGES = """query($statuses: [MessageStatus!]) {
  messages(first: 20, statuses: $statuses) { totalCount nodes { id status subject } }
}"""
DEAL_EMAILS = """query($id: ID!) { node(id: $id) { ... on Deal {
  activities(first: 10) { nodes { kind status subject attendees { id } } }
} } }"""
UPDATE_CONTACT = "mutation($input: UpdateContactInput!) { updateContact(input: $input) { id } }"


async def deal_with_contacts(member) -> tuple[dict, dict, dict]:
    buyer = await create_contact(member, firstName="Ada")
    cfo = await create_contact(member)
    opportunity = await create_opportunity(member, contactId=buyer["id"])
    await member.api.data(
        ADD_PARTICIPANT,
        input={"recordId": opportunity["id"], "contactId": cfo["id"], "role": "CFO"},
    )
    return opportunity, buyer, cfo


async def test_a_draft_goes_to_the_primary_contact_with_participants_offered_as_cc(org):
    opportunity, buyer, cfo = await deal_with_contacts(org.seller)
    blocked = await create_contact(org.seller, doNotContact=True)
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": opportunity["id"], "contactId": blocked["id"]}
    )
    draft = (await org.seller.api.data(COMPOSE, id=opportunity["id"]))["composeMessage"]
    assert draft["to"] == {"id": buyer["id"], "email": buyer["email"]}
    assert [c["id"] for c in draft["cc"]] == [cfo["id"]]  # not the do-not-contact one
    assert draft["body"].startswith("Hello Ada,")
    assert opportunity["name"] in draft["subject"]
    assert draft["problem"] is None
    assert draft["context"]["recordId"] == opportunity["id"]


async def test_a_record_without_a_reachable_primary_contact_says_so(org):
    lead = await create_lead(org.seller)
    draft = (await org.seller.api.data(COMPOSE, id=lead["id"]))["composeMessage"]
    assert (draft["to"], draft["problem"]) == (None, "NO_PRIMARY_CONTACT")
    for values, problem in (
        ({"email": None}, "PRIMARY_CONTACT_HAS_NO_EMAIL"),
        ({"doNotContact": True}, "PRIMARY_CONTACT_DO_NOT_CONTACT"),
    ):
        contact = await create_contact(org.seller, **values)
        await org.seller.api.data(SET_PRIMARY, record=lead["id"], contact=contact["id"])
        draft = (await org.seller.api.data(COMPOSE, id=lead["id"]))["composeMessage"]
        assert (draft["to"], draft["problem"]) == (None, problem)
        assert draft["problemMessage"]
        error = await org.seller.api.error(
            SEND, input={"recordId": lead["id"], "subject": "Hi", "body": "Hello"}
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "toContactId",
        )


async def test_without_smtp_a_sent_message_waits_in_the_outbox_with_its_activity(org):
    opportunity, buyer, cfo = await deal_with_contacts(org.seller)
    sent = (
        await org.seller.api.data(
            SEND,
            input={
                "recordId": opportunity["id"],
                "subject": "Our offer",
                "body": "Please find our offer.",
                "ccContactIds": [cfo["id"]],
            },
        )
    )["sendMessage"]
    assert (sent["status"], sent["attempts"], sent["toEmail"]) == ("OUTBOX", 0, buyer["email"])
    assert sent["cc"] == [{"contactId": cfo["id"], "email": cfo["email"]}]
    assert sent["to"] == {"id": buyer["id"]}
    outbox = (await org.seller.api.data(MESSAGES, statuses=["OUTBOX", "FAILED"]))["messages"]
    assert [m["id"] for m in outbox["nodes"]] == [sent["id"]]
    # Not in anyone else's list but the admin's.
    assert (await org.teammate.api.data(MESSAGES))["messages"]["totalCount"] == 0
    assert sent["id"] in [
        m["id"] for m in (await org.admin.api.data(MESSAGES))["messages"]["nodes"]
    ]
    node = "query($id: ID!) { node(id: $id) { ... on Message { subject } } }"
    assert (await org.seller.api.data(node, id=sent["id"]))["node"] == {"subject": "Our offer"}
    assert await org.teammate.api.error_code(node, id=sent["id"]) == "NOT_FOUND"
    emails = (await org.seller.api.data(DEAL_EMAILS, id=opportunity["id"]))["node"]["activities"]
    assert emails["nodes"] == [
        {
            "kind": "EMAIL",
            "status": "DONE",
            "subject": "Our offer",
            "attendees": [{"id": buyer["id"]}, {"id": cfo["id"]}],
        }
    ]
    latest = (await history(org.seller, opportunity["id"]))[0]
    assert latest["kind"] == "MESSAGE_SENT"
    assert (latest["changes"]["messageId"], latest["changes"]["contactId"]) == (
        sent["id"],
        buyer["id"],
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": " "}, "subject"),
        ({"body": ""}, "body"),
        ({"toContactId": "Q29udGFjdDo5OTk5OTk5"}, "toContactId"),
        ({"ccContactIds": ["bm9wZQ=="]}, "ccContactIds"),
        ({"recordId": "QWNjb3VudDox"}, "recordId"),
        ({"subject": "Offer\r\nBcc: spy@evil.example"}, "subject"),  # no header injection
    ],
)
async def test_bad_input_sends_nothing(org, change, field):
    opportunity, _, _ = await deal_with_contacts(org.seller)
    before = await history(org.seller, opportunity["id"])
    error = await org.seller.api.error(
        SEND, input={"recordId": opportunity["id"], "subject": "S", "body": "B", **change}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", field)
    assert await history(org.seller, opportunity["id"]) == before
    assert (await org.seller.api.data(MESSAGES))["messages"]["totalCount"] == 0


async def test_do_not_contact_copies_are_refused_and_readers_only_may_send(org, other_org):
    opportunity, _, cfo = await deal_with_contacts(org.seller)
    await org.seller.api.data(UPDATE_CONTACT, input={"id": cfo["id"], "doNotContact": True})
    error = await org.seller.api.error(
        SEND,
        input={
            "recordId": opportunity["id"],
            "subject": "S",
            "body": "B",
            "ccContactIds": [cfo["id"]],
        },
    )
    assert error["extensions"]["field"] == "ccContactIds"
    assert "not to be contacted" in error["message"]
    private = await create_lead(org.seller, visibility="PRIVATE")
    send = {"recordId": private["id"], "subject": "S", "body": "B"}
    assert await org.teammate.api.error_code(SEND, input=send) == "NOT_FOUND"
    assert await other_org.admin.api.error_code(COMPOSE, id=opportunity["id"]) == "NOT_FOUND"


class _Inbox:
    """A real SMTP server on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.delay = 0.0  # seconds each message takes to be accepted

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def _post_to(server: AppServer, member, query: str, variables: dict) -> dict:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {member.api.token}"},
        )
    return response.json()


async def _send_via(server: AppServer, member, values: dict) -> dict:
    body = await _post_to(server, member, SEND, {"input": values})
    assert not body.get("errors"), body
    return body["data"]["sendMessage"]


async def test_with_smtp_the_message_is_delivered(live_server, org, smtp):
    inbox, port = smtp
    opportunity, buyer, cfo = await deal_with_contacts(org.seller)
    # A name that needs quoting and encoding in a header.
    renamed = {"id": buyer["id"], "lastName": "Lovelace, née Byron"}
    await org.seller.api.data(UPDATE["Contact"], input=renamed)
    smtp_url, sent_from = f"smtp://127.0.0.1:{port}", "crm@seller.example"
    async with live_server.serve(smtp_url=smtp_url, smtp_from=sent_from) as server:
        sent = await _send_via(
            server,
            org.seller,
            {
                "recordId": opportunity["id"],
                "subject": "Proposal",
                "body": "Dear Ada, here it is.",
                "ccContactIds": [cfo["id"]],
            },
        )
    assert (sent["status"], sent["attempts"], sent["lastError"]) == ("SENT", 1, None)
    assert sent["sentAt"] is not None
    assert len(inbox.received) == 1
    envelope = inbox.received[0]
    assert envelope.mail_from == "crm@seller.example"
    assert sorted(envelope.rcpt_tos) == sorted([buyer["email"], cfo["email"]])
    email = message_from_bytes(envelope.content, policy=policy.default)
    assert (email["To"].addresses, email["Cc"].addresses, email["Subject"]) == (
        (Address("Ada Lovelace, née Byron", addr_spec=buyer["email"]),),
        (Address(f"{cfo['firstName']} {cfo['lastName']}", addr_spec=cfo["email"]),),
        "Proposal",
    )
    # RFC 5322's one required header besides From: when it was handed over.
    sent_at = datetime.fromisoformat(sent["sentAt"])
    assert abs(email["Date"].datetime - sent_at) < timedelta(seconds=60)
    assert email["Reply-To"] == org.seller.email
    assert "Dear Ada, here it is." in email.get_content()


async def test_an_unreachable_smtp_server_is_retried_then_the_message_fails(live_server, org):
    opportunity, _, _ = await deal_with_contacts(org.seller)
    async with live_server.serve(smtp_url=f"smtp://127.0.0.1:{free_port()}") as server:
        sent = await _send_via(
            server, org.seller, {"recordId": opportunity["id"], "subject": "S", "body": "B"}
        )
    assert (sent["status"], sent["attempts"]) == ("FAILED", 3)
    assert sent["lastError"]
    failed = (await org.seller.api.data(MESSAGES, statuses=["FAILED"]))["messages"]["nodes"]
    assert [m["id"] for m in failed] == [sent["id"]]
    # The message and its event committed before delivery was tried.
    assert (await history(org.seller, opportunity["id"]))[0]["kind"] == "MESSAGE_SENT"


async def test_text_that_is_not_unicode_is_bad_input(http, org):
    opportunity, _, _ = await deal_with_contacts(org.seller)
    # A lone surrogate can only be written as a JSON escape: send the request as raw text.
    mutation = "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }"
    variables = '{"input": {"recordId": "RECORD", "subject": "S", "body": "x\\ud800y"}}'
    raw = f'{{"query": "{mutation}", "variables": {variables}}}'.replace(
        "RECORD", opportunity["id"]
    )
    response = await http.post(
        "/graphql",
        content=raw.encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {org.seller.api.token}",
        },
    )
    error = response.json()["errors"][0]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "body")


RETRY = """mutation($id: ID!) {
  retryMessage(id: $id) { id status attempts lastError sentAt }
}"""


async def test_a_failed_message_is_retried_by_its_sender_once_smtp_works(live_server, org, smtp):
    inbox, port = smtp
    opportunity, buyer, _ = await deal_with_contacts(org.seller)
    async with live_server.serve(smtp_url=f"smtp://127.0.0.1:{free_port()}") as server:
        failed = await _send_via(
            server, org.seller, {"recordId": opportunity["id"], "subject": "S", "body": "B"}
        )
    assert failed["status"] == "FAILED"
    # The suite's own server has no SMTP_URL: nothing to retry with.
    error = await org.seller.api.error(RETRY, id=failed["id"])
    assert error["extensions"]["code"] == "CONFLICT"

    async with live_server.serve(smtp_url=f"smtp://127.0.0.1:{port}") as server:
        other = await _post_to(server, org.teammate, RETRY, {"id": failed["id"]})
        assert other["errors"][0]["extensions"]["code"] == "NOT_FOUND"  # not their message
        retried = await _post_to(server, org.seller, RETRY, {"id": failed["id"]})
        assert retried["data"]["retryMessage"]["status"] == "SENT"
        assert retried["data"]["retryMessage"]["attempts"] == 4
        assert retried["data"]["retryMessage"]["lastError"] is None
        again = await _post_to(server, org.admin, RETRY, {"id": failed["id"]})
        assert again["errors"][0]["extensions"]["code"] == "CONFLICT"  # sent already
    assert [envelope.rcpt_tos for envelope in inbox.received] == [[buyer["email"]]]


async def _send_outbox(database_url: str, smtp_url: str, *flags: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "send-outbox",
        *flags,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "SMTP_URL": smtp_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_the_outbox_is_delivered_once_by_the_operator_command(live_server, org, smtp):
    inbox, port = smtp
    opportunity, buyer, _ = await deal_with_contacts(org.seller)
    waiting = [
        (
            await org.seller.api.data(
                SEND, input={"recordId": opportunity["id"], "subject": s, "body": "B"}
            )
        )["sendMessage"]  # noqa: E501
        for s in ("First", "Second", "Half-sent", "Being sent")
    ]
    assert {m["status"] for m in waiting} == {"OUTBOX"}
    # A process stopped while sending the third long ago; another is sending the fourth now.
    ids = [pk(m["id"]) for m in waiting]
    long_ago = datetime.now(UTC) - timedelta(minutes=30)
    await Message.filter(id=ids[2]).update(status=MessageStatus.SENDING, updated_at=long_ago)
    await Message.filter(id=ids[3]).update(status=MessageStatus.SENDING)

    smtp_url = f"smtp://127.0.0.1:{port}"
    await _send_outbox(live_server.database_url, smtp_url)
    await _send_outbox(live_server.database_url, smtp_url)  # a second run sends nothing again
    ours = [e for e in inbox.received if e.rcpt_tos == [buyer["email"]]]
    subjects = sorted(message_from_bytes(e.content)["Subject"] for e in ours)
    assert subjects == ["First", "Half-sent", "Second"]
    statuses = {
        m["subject"]: m["status"]
        for m in (await org.seller.api.data(MESSAGES))["messages"]["nodes"]
    }
    assert statuses == {
        "First": "SENT",
        "Second": "SENT",
        "Half-sent": "SENT",
        "Being sent": "SENDING",
    }


async def test_two_outbox_runs_at_once_deliver_each_message_once(live_server, org, smtp):
    inbox, port = smtp
    inbox.delay = 0.1  # slow enough for the two runs to overlap
    opportunity, buyer, _ = await deal_with_contacts(org.seller)
    for n in range(12):
        values = {"recordId": opportunity["id"], "subject": f"Note {n}", "body": "B"}
        await org.seller.api.data(SEND, input=values)
    smtp_url = f"smtp://127.0.0.1:{port}"
    await asyncio.gather(
        _send_outbox(live_server.database_url, smtp_url),
        _send_outbox(live_server.database_url, smtp_url),
    )
    subjects = [
        message_from_bytes(e.content)["Subject"]
        for e in inbox.received
        if e.rcpt_tos == [buyer["email"]]
    ]
    assert sorted(subjects) == sorted(f"Note {n}" for n in range(12))
