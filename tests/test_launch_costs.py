"""What a campaign launch does per member, made cheaper (issue 18), answering as before: the
campaign's email bytes written directly equal the email package's; a template parsed once
renders what `render` does; and a job in a server process gives way to the requests in flight
(resolvers/foreground.py), within its budget of waiting."""

from __future__ import annotations

import asyncio
import random
import re
import string
import time

from resolvers.campaign import MERGE_FIELD_RE, Template
from resolvers.events import global_id
from resolvers.foreground import Courtesy, InFlight
from resolvers.message import _campaign_email, _campaign_email_by_package, _plain_header

DATE = "Wed, 02 Dec 2026 14:46:42 +0000"
MESSAGE_ID = "<179622280246.8925.2074513223292239503@localhost>"


class Mail:
    """What _campaign_email reads of a message."""

    def __init__(self, pk: int, to_email: str, subject: str, body: str) -> None:
        self.id, self.to_email, self.subject, self.body = pk, to_email, subject, body


def _both(mail: Mail, sender: str, to_name: str) -> tuple[bytes, bytes, bool]:
    from email.utils import formataddr

    direct = _campaign_email(
        mail,  # type: ignore[arg-type]
        sender,
        "reply@seller.example",
        "crm@seller.example",
        to_name,
        date=DATE,
        message_id=MESSAGE_ID,
    )
    headers = (
        ("Date", DATE),
        ("From", formataddr((sender, "crm@seller.example"))),
        ("Reply-To", "reply@seller.example"),
        ("To", formataddr((to_name, mail.to_email))),
        ("Subject", mail.subject),
        ("Message-ID", MESSAGE_ID),
        ("X-CRM-Message", global_id("Message", mail.id) or ""),
    )
    by_package = _campaign_email_by_package(mail, headers)  # type: ignore[arg-type]
    return direct, by_package, all(_plain_header(name, value) for name, value in headers)


def test_campaign_email_bytes_are_the_email_packages() -> None:
    cases = [
        (Mail(5, "m1@client.example", "Hello Member1", "Dear Member1,\nnews."), "Bench", "M B"),
        (Mail(6, "a@b.example", "Héllo ça va", "ça va ?\n" * 40), "Lovelace, née Byron", "Zoë"),
        (Mail(7, "a@b.example", "x" * 90, "long subject"), "A  B", '"quoted" name'),
        (Mail(8, "a@b.example", " lead and trail ", ""), "\tTab", "=?utf-8?q?x?="),
    ]
    rng = random.Random(18)
    alphabet = string.ascii_letters + "  \t\"',.;:<>()@=?-_é€ñ"

    def text(longest: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))

    for _ in range(3000):
        local = "".join(rng.choice(string.ascii_lowercase + ".-") for _ in range(8)) or "x"
        mail = Mail(rng.randint(1, 10**9), f"{local}@x.example", text(90), text(300))
        cases.append((mail, text(20), text(rng.choice([10, 30, 70]))))
    written = 0
    for mail, sender, to_name in cases:
        direct, by_package, plain = _both(mail, sender, to_name)
        assert direct == by_package, (mail.subject, sender, to_name)
        written += plain
    # Both ways were compared: the direct one for the plain headers, the package for the rest.
    assert 100 < written < len(cases) - 100


def render(template: str, values: dict[str, str], *, single_line: bool = False) -> str:
    """The reference: every merge field substituted by the regular expression."""

    def value(found: re.Match[str]) -> str:
        text = values[found.group(1)]
        return " ".join(text.split()) if single_line else text

    return MERGE_FIELD_RE.sub(value, template)


def test_a_template_parsed_once_renders_as_render_does() -> None:
    values = {"contact.first_name": "Ada", "contact.full_name": "Ada  Lovelace\nByron"}
    for template in [
        "",
        "plain",
        "{{contact.first_name}}",
        "Dear {{ contact.full_name }},\n{{contact.first_name}}{{contact.first_name}} end",
    ]:
        for single_line in (False, True):
            parsed = Template(template, single_line=single_line)
            assert parsed.render(values) == render(template, values, single_line=single_line)


async def test_a_job_gives_way_while_a_request_is_in_flight() -> None:
    requests = InFlight()
    courtesy = Courtesy(share=0.5, longest=5.0, requests=requests)
    courtesy.started -= 10  # a job under way for 10 s: its budget allows waiting
    await courtesy.turn()  # nothing in flight: at once
    requests.enter()
    turn = asyncio.create_task(courtesy.turn())
    await asyncio.sleep(0.05)
    assert not turn.done()  # waits while the request is answered
    requests.leave()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert turn.done()
    assert 0.04 < courtesy.waited < 1


async def test_a_job_never_waits_more_than_its_share() -> None:
    requests = InFlight()
    requests.enter()  # a request that never ends
    courtesy = Courtesy(share=0.5, longest=0.05, requests=requests)
    started = time.monotonic()
    turns = 0
    while time.monotonic() - started < 0.6:
        await courtesy.turn()
        turns += 1
        await asyncio.sleep(0.002)  # the job's step
    # It waited at most about half the time, and kept stepping.
    assert courtesy.waited <= 0.5 * 0.6 + 0.05
    assert turns > 20
    requests.leave()


async def test_a_job_that_ran_long_alone_saves_up_no_waiting() -> None:
    """A job that ran a while without requests, then meets a steady stream of them: it still
    waits at most about its share, not all it would have saved."""
    requests = InFlight()
    courtesy = Courtesy(share=0.5, longest=0.05, requests=requests)
    await asyncio.sleep(1.0)  # running alone: no request in flight
    requests.enter()  # then a request that never ends
    started = time.monotonic()
    turns = 0
    while time.monotonic() - started < 0.6:
        await courtesy.turn()
        turns += 1
        await asyncio.sleep(0.002)
    assert courtesy.waited <= 0.5 * 0.6 + 0.15
    assert turns > 20
    requests.leave()


async def test_a_job_keeps_its_steps_short_while_requests_are_recent() -> None:
    """A request ended a moment ago: the job's turn lets the loop run once (a request that has
    just arrived is read before the job's next step), and another of the job's tasks waits at
    its turn while the job is in a transaction (its SMTP exchanges do not stretch it)."""
    requests = InFlight()
    courtesy = Courtesy(share=0.5, longest=5.0, requests=requests)
    requests.enter()
    requests.leave()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "the loop ran")
    await courtesy.turn()
    assert ran == ["the loop ran"]

    in_transaction = asyncio.Event()
    release = asyncio.Event()

    async def recording() -> None:
        async with courtesy.exclusive():
            in_transaction.set()
            await release.wait()  # the transaction's statements

    recorder = asyncio.create_task(recording())
    await in_transaction.wait()
    lane = asyncio.create_task(courtesy.turn())
    await asyncio.sleep(0.05)
    assert not lane.done()  # waits for the job's transaction
    release.set()
    await recorder
    await asyncio.wait_for(lane, 1)


async def test_a_turn_waits_for_every_transaction_of_the_job_under_way() -> None:
    """Two of the job's tasks in their transactions at once (its recording, its delivery's):
    another task's turn waits until both have ended, whichever ends first."""
    requests = InFlight()
    courtesy = Courtesy(share=0.5, longest=5.0, requests=requests)
    requests.enter()
    requests.leave()
    opened = [asyncio.Event(), asyncio.Event()]
    release = [asyncio.Event(), asyncio.Event()]

    async def transaction(i: int) -> None:
        async with courtesy.exclusive():
            opened[i].set()
            await release[i].wait()

    first = asyncio.create_task(transaction(0))
    await opened[0].wait()
    second = asyncio.create_task(transaction(1))
    await opened[1].wait()
    lane = asyncio.create_task(courtesy.turn())
    release[1].set()  # the later one ends first
    await second
    await asyncio.sleep(0.05)
    assert not lane.done()  # the first is still open
    release[0].set()
    await first
    await asyncio.wait_for(lane, 1)


async def test_organizations_at_their_limits_do_not_wait_for_each_other() -> None:
    """A request giving way does no work: another organization at its limits does not wait for
    it (they would both wait out their courtesy, the loop idle); a working request of another
    organization is still waited for, and a held refusal (`away`) counts as none."""
    requests = InFlight()
    a, b = requests.enter(), requests.enter()
    requests.own(a, "A")
    requests.own(b, "B")
    courtesy_a = Courtesy(share=1.0, longest=5.0, requests=requests, owner="A")
    courtesy_b = Courtesy(share=1.0, longest=5.0, requests=requests, owner="B")
    courtesy_a.started -= 10
    courtesy_b.started -= 10
    courtesy_a._credit = courtesy_b._credit = 5.0  # noqa: SLF001 (as after 10 s of running)
    a_turn = asyncio.create_task(courtesy_a.turn())  # B's request is working: A waits
    await asyncio.sleep(0.05)
    assert not a_turn.done()
    await asyncio.wait_for(courtesy_b.turn(), 0.5)  # A's only request is giving way: B goes
    assert not a_turn.done()
    with requests.away(b):  # B's request held (a refusal): A goes
        await asyncio.wait_for(a_turn, 1)
    assert requests.count == 2 and requests.others("A") == 1 and requests.others("B") == 1
    requests.leave(a)
    requests.leave(b)
    assert requests.count == 0 and requests.others() == 0
    with requests.away(None):  # a request never counted: nothing changes
        assert requests.count == 0
    assert requests.count == 0


async def test_a_job_with_no_recent_request_runs_on() -> None:
    """In a worker (or long after the last request) a turn returns at once, in a transaction of
    another of the job's tasks or not."""
    courtesy = Courtesy(share=0.5, longest=5.0, requests=InFlight())
    assert not courtesy.busy()
    held = asyncio.Event()
    release = asyncio.Event()

    async def recording() -> None:
        async with courtesy.exclusive():
            held.set()
            await release.wait()

    recorder = asyncio.create_task(recording())
    await held.wait()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "the loop ran")
    await courtesy.turn()
    assert ran == []  # did not even yield
    release.set()
    await recorder


def test_a_line_break_in_any_header_value_is_refused() -> None:
    """Not written into the headers (an injected header or body) nor left to the email package
    (which raises HeaderParseError, not ValueError, for some): the message is Unsendable."""
    mail = Mail(9, "to@client.example", "Hello", "body")
    for sender, to_name in [
        ("Alice\r\n\r\nInjected body", "Bob"),
        ("Alice\r\nBcc: x@evil.example", "Bob"),
        ("Alice", "Bob\nBcc: x@evil.example"),
    ]:
        try:
            _both(mail, sender, to_name)
        except ValueError:
            continue
        raise AssertionError(f"{sender!r} / {to_name!r} was written")


async def test_a_job_paces_itself_while_requests_are_recent() -> None:
    """At a duty of 0.25, while requests are recent (none in flight at its turns), a job that
    works 10 ms per step rests about 30 ms after each: four times as long in all. With no
    request recent it runs at full speed."""

    async def steps(courtesy: Courtesy, requests: InFlight) -> float:
        started = time.monotonic()
        for _ in range(20):
            requests.enter()  # a request answered between the job's steps
            requests.leave()
            await courtesy.turn()
            await asyncio.sleep(0.01)  # the job's step (its statements, its SMTP exchange)
        return time.monotonic() - started

    requests = InFlight()
    paced = Courtesy(share=0.5, longest=0.2, requests=requests, duty=0.25)
    elapsed = await steps(paced, requests)
    # 19 rests of 3 x its step (none before the first): about 2.85 times its working time,
    # however long this machine makes a step of 10 ms.
    assert paced.rested > 0.4
    assert 2.0 < paced.rested / (elapsed - paced.rested) < 3.5
    assert paced.waited == 0  # no request was in flight at its turns: it rested, not waited

    alone = Courtesy(share=0.5, longest=0.2, requests=InFlight(), duty=0.25)
    await steps(alone, InFlight())
    assert alone.rested == 0
