"""The per-process hub: reads the event log as it grows and hands each event to local subscribers.

The hub follows the log of each organization that has subscribers in this process, from its own
position (`id > position`, in id order: an organization's events commit in id order, see
resolvers/events.py; organizations' events interleave in no order the hub relies on, so one
organization's slow transaction never holds back another's delivery). It wakes on a doorbell from
the bus naming the organizations that wrote, on a local commit, and on a timer that re-reads
every followed organization, so a lost doorbell or a bus outage delays delivery but loses
nothing. For each batch it loads, in a constant number of statements whatever the number of
subscribers, what the read rules need (the records, their followers, the organizations' users,
the notifications) and then offers each event to each subscriber of its organization whose feed
wants it and who may read it.

A subscriber registers while no batch is being dispatched and learns its organization's position
at that moment: events up to it come from the log (replay), later ones from its queue, so
nothing is missed or sent twice. Its queue is bounded: a subscriber that falls too far behind is
cut off and told the cursor to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from models import Event, Notification, User, Visibility
from observability import LIVE_DELIVERIES, LIVE_ENDED, LIVE_SUBSCRIPTIONS
from resolvers.access import sees_record
from resolvers.auth import valid_token_hashes
from resolvers.deal_kinds import FOLLOWED
from resolvers.loaders import columns_of, instances
from resolvers.permissions import reporting_lines, reports_of
from subscriptions.bus import RECONNECTED, Doorbell, create_bus

log = logging.getLogger("crm.hub")

BATCH = 500  # events read from the log at a time
CHUNK = 5000  # ids in one IN (...): far below the drivers' 32,767 parameters


class SubscriptionEnded(Exception):
    """Why the hub stopped feeding a subscriber: `reason` is "overflow", "revoked", or
    "unreadable" (a feed's wants raise it: the record it follows is out of the user's reach)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Snapshot:
    """What the read rules need for one batch of events, loaded once for all subscribers."""

    deals: dict[tuple[str, int], Any]
    followers: dict[tuple[str, int], set[int]]
    users: dict[int, User]  # the subscribers and the actors
    lines: dict[int, dict[int, list[int]]]  # organization -> its reporting_lines
    notifications: dict[int, dict[int, Notification]]  # event id -> user id -> notification
    _teams: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    async def load(cls, events: list[Event], subscribers: list[Subscriber]) -> Snapshot:
        """`subscribers`: those of the organizations of `events` (only they are offered them)."""
        organization_ids = {sub.organization_id for sub in subscribers}
        ids_by_kind: dict[str, set[int]] = defaultdict(set)
        for event in events:
            ids_by_kind[event.record_type].add(event.record_id)
        deals: dict[tuple[str, int], Any] = {}
        followers: dict[tuple[str, int], set[int]] = defaultdict(set)
        for name, record_ids in ids_by_kind.items():
            kind = FOLLOWED[name]
            for row in await kind.model.filter(id__in=record_ids):
                deals[name, row.id] = row
            rows = await kind.follower.filter(record_id__in=record_ids).values_list(
                "record_id", "user_id"
            )
            for record_id, user_id in rows:
                followers[name, record_id].add(user_id)
        if not events:
            return cls(deals, followers, {}, {}, {})
        user_ids = {sub.user_id for sub in subscribers}
        user_ids |= {event.actor_id for event in events if event.actor_id is not None}
        users = {user.id: user for user in await _in_chunks(User, user_ids)}
        # Teams decide only for private records (access.sees): who reports to whom, when needed.
        pairs: dict[int, list[tuple[int, int | None]]] = defaultdict(list)
        if any(getattr(deal, "visibility", None) == Visibility.PRIVATE for deal in deals.values()):
            rows = await User.filter(organization_id__in=organization_ids).values_list(
                "organization_id", "id", "manager_id"
            )
            for organization_id, member_id, manager_id in rows:
                pairs[organization_id].append((member_id, manager_id))
        lines = {
            organization_id: reporting_lines(found) for organization_id, found in pairs.items()
        }
        notifications: dict[int, dict[int, Notification]] = defaultdict(dict)
        readers = {sub.user_id for sub in subscribers if sub.notifications}
        if readers:
            event_ids = [event.id for event in events]
            for notification in await _in_chunks(
                Notification, readers, "user_id", event_id__in=event_ids
            ):
                notifications[notification.event_id][notification.user_id] = notification
        return cls(deals, followers, users, lines, notifications)

    def team(self, user: User) -> set[int]:
        if user.id not in self._teams:
            self._teams[user.id] = reports_of(user.id, self.lines.get(user.organization_id, {}))
        return self._teams[user.id]

    def follows(self, user_id: int, event: Event) -> bool:
        return user_id in self.followers.get((event.record_type, event.record_id), ())

    def may_read(self, user: User, event: Event) -> bool:
        """The read rule of resolvers.permissions, on this batch's rows. A deleted record's
        DELETED event still reaches those who could read it."""
        deal = self.deals.get((event.record_type, event.record_id))
        if deal is None:
            return False
        follows = self.follows(user.id, event)
        return sees_record(user, self.team(user), event.record_type, deal, follows=follows)


# What a feed takes from an event, for a user: the event, a notification, or None.
Wants = Callable[[Snapshot, User, Event], Any]


@dataclass(frozen=True)
class Delivery:
    """An item for a subscriber, with the rows its fields need (the event and who did it), so
    that delivering it runs no query."""

    item: Any
    event: Event
    actor: User | None


class Subscriber:
    """One live subscription of this process: its feed's rule and a bounded queue."""

    def __init__(
        self,
        organization_id: int,
        user_id: int,
        token_hash: str | None,
        wants: Wants,
        limit: int,
        notifications: bool,
    ) -> None:
        self.organization_id = organization_id
        self.user_id = user_id
        self.token_hash = token_hash
        self.wants = wants
        self.limit = limit
        self.notifications = notifications  # its feed reads notifications, not only events
        self.start = 0  # its organization's position when it registered: replay covers up to here
        self._items: deque[Delivery] = deque()
        self._ready = asyncio.Event()
        self._ended: SubscriptionEnded | None = None

    def offer(self, item: Delivery) -> None:
        if self._ended is not None:
            return
        if len(self._items) >= self.limit:
            self.end(SubscriptionEnded("overflow"), keep_queued=True)
            LIVE_ENDED.labels("overflow").inc()
            return
        LIVE_DELIVERIES.inc()
        self._items.append(item)
        self._ready.set()

    def end(self, why: SubscriptionEnded, *, keep_queued: bool) -> None:
        """Stop feeding it; what is queued is still delivered unless the reason forbids it."""
        self._ended = why
        if not keep_queued:
            self._items.clear()
        self._ready.set()

    @property
    def ended(self) -> bool:
        return self._ended is not None

    async def next(self) -> Delivery:
        while not self._items:
            if self._ended is not None:
                raise self._ended
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class Hub:
    def __init__(
        self,
        broadcast_url: str,
        channel: str,
        *,
        poll_seconds: float,
        queue_size: int,
        auth_recheck_seconds: float,
    ) -> None:
        self.broadcast, self.backend = create_bus(broadcast_url)
        self.channel = channel
        self.poll_seconds = poll_seconds
        self.queue_size = queue_size
        self.auth_recheck_seconds = auth_recheck_seconds
        # Organization -> the id of the last of its events dispatched, for the organizations
        # with subscribers here (and only them: memory follows this process's subscribers).
        self.positions: dict[int, int] = {}
        self._subscribers: dict[int, set[Subscriber]] = defaultdict(set)
        self._rung: set[int] = set()  # organizations whose log grew since the last read
        self._connections: dict[int, int] = {}  # websockets open per user
        self._wake = asyncio.Event()
        self._recheck = asyncio.Event()
        self._dispatching = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.doorbell = Doorbell(self.broadcast, channel)
        # Campaign -> the wake-ups of this process's campaignProgress subscriptions to it.
        self._campaigns: dict[int, set[asyncio.Event]] = defaultdict(set)
        # Told of every doorbell, whoever follows the organization (the webhooks' delivery).
        self.doorbell_listeners: list[Callable[[Iterable[int] | None], None]] = []

    # Lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.broadcast.connect()
        self._tasks = [
            asyncio.create_task(self._keep(self._listen), name="hub bus listener"),
            asyncio.create_task(self._keep(self._follow_log), name="hub log reader"),
            asyncio.create_task(self._keep(self._check_sessions), name="hub session checker"),
        ]

    async def _keep(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the hub's loops for the life of the process: an unexpected error is
        logged and the loop starts again (its state is in the log, not in the loop)."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting it", loop.__name__)
                await asyncio.sleep(1)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.doorbell.close()
        await self.broadcast.disconnect()

    @property
    def bus_connected(self) -> bool:
        return bool(getattr(self.backend, "connected", True))

    # Announcing ----------------------------------------------------------------------------

    def announce(
        self,
        *,
        organizations: Iterable[int] = (),
        sessions: bool = False,
        campaigns: Iterable[int] = (),
    ) -> None:
        """After a commit: wake this process's reader for the organizations whose event log
        grew (and its campaignProgress subscriptions for the campaigns whose progress moved),
        and ring the other processes' doorbell (subscriptions.bus.Doorbell: not waited for)."""
        rung = sorted(set(organizations))
        progressed = sorted(set(campaigns))
        if rung:
            self._ring(rung)
        if sessions:
            self._recheck.set()
        self._ring_campaigns(progressed)
        self.doorbell.announce(organizations=rung, sessions=sessions, campaigns=progressed)

    async def _listen(self) -> None:
        async with self.broadcast.subscribe(self.channel) as bus:
            while True:
                message = await bus.get()
                if message.message == RECONNECTED:
                    self._ring(None)
                    self._recheck.set()
                    self._ring_campaigns(None)
                    continue
                try:
                    doorbell = orjson.loads(message.message)
                except orjson.JSONDecodeError:
                    doorbell = None
                if not isinstance(doorbell, dict):
                    # Anyone who can reach the bus can write to the channel: read nothing in.
                    log.warning("ignoring a malformed bus message %.80r", message.message)
                    continue
                rung = doorbell.get("organizations")
                if isinstance(rung, list) and all(type(item) is int for item in rung):
                    self._ring(rung)
                elif doorbell.get("events"):  # a doorbell that does not say whose log grew
                    self._ring(None)
                if doorbell.get("sessions"):
                    self._recheck.set()
                progressed = doorbell.get("campaigns")
                if isinstance(progressed, list) and all(type(item) is int for item in progressed):
                    self._ring_campaigns(progressed)

    # Campaign progress ---------------------------------------------------------------------

    @contextlib.contextmanager
    def watch_campaign(self, campaign_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever a doorbell says the campaign's progress moved (or the bus
        reconnected), for a campaignProgress subscription to re-read its row."""
        rung = asyncio.Event()
        self._campaigns[campaign_id].add(rung)
        try:
            yield rung
        finally:
            watchers = self._campaigns.get(campaign_id)
            if watchers is not None:
                watchers.discard(rung)
                if not watchers:
                    del self._campaigns[campaign_id]

    def _ring_campaigns(self, campaigns: Iterable[int] | None) -> None:
        """Wake the subscriptions to these campaigns (None: to every campaign watched here)."""
        for campaign_id in list(self._campaigns) if campaigns is None else campaigns:
            for rung in self._campaigns.get(campaign_id, ()):
                rung.set()

    # Following the log ---------------------------------------------------------------------

    def _ring(self, organizations: Iterable[int] | None) -> None:
        """Wake the reader for these organizations (None: every organization followed here)."""
        for listener in self.doorbell_listeners:
            listener(None if organizations is None else list(organizations))
        if organizations is None:
            self._rung.update(self._subscribers)
        else:
            self._rung.update(org for org in organizations if org in self._subscribers)
        if self._rung:
            self._wake.set()

    async def _follow_log(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                self._rung.update(self._subscribers)  # the timer re-reads every log
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception:  # the database is unreachable for now: try again later
                log.exception("could not read the event log")
                self._rung.update(self._subscribers)
                await asyncio.sleep(self.poll_seconds)

    async def catch_up(self, organizations: Iterable[int] | None = None) -> None:
        """Dispatch every event after each rung organization's position (`organizations`: these
        as well), batch by batch."""
        if organizations is not None:
            self._rung.update(organizations)
        while self._rung:
            async with self._dispatching:
                wanted = {org: self.positions[org] for org in self._rung if org in self.positions}
                self._rung.clear()
                events = await read_logs(wanted, BATCH) if wanted else []
                if not events:
                    continue
                written = {event.organization_id for event in events}
                subscribers = [sub for org in written for sub in self._subscribers.get(org, ())]
                snapshot = await Snapshot.load(events, subscribers)
                counts: dict[int, int] = defaultdict(int)
                for event in events:
                    counts[event.organization_id] += 1
                    if event.organization_id in self.positions:
                        self._dispatch(event, snapshot)
                        self.positions[event.organization_id] = event.id
                # An organization with a full batch has more to read.
                self._rung.update(org for org, count in counts.items() if count >= BATCH)

    def _dispatch(self, event: Event, snapshot: Snapshot) -> None:
        for subscriber in list(self._subscribers.get(event.organization_id, ())):
            user = snapshot.users.get(subscriber.user_id)
            if user is None or not user.is_active:
                self._drop(subscriber, SubscriptionEnded("revoked"))
                continue
            try:
                item = subscriber.wants(snapshot, user, event)
            except SubscriptionEnded as ended:  # what it follows is out of reach now
                subscriber.end(ended, keep_queued=True)
                self._remove(subscriber)
                LIVE_ENDED.labels(ended.reason).inc()
                continue
            if item is not None:
                actor = snapshot.users.get(event.actor_id) if event.actor_id else None
                subscriber.offer(Delivery(item, event, actor))
                if subscriber.ended:
                    self._remove(subscriber)  # overflowed: it holds no more than its limit

    # Connections and subscribers ---------------------------------------------------------

    def connect(self, user_id: int, limit: int) -> bool:
        """Count a user's new websocket on this process; False (not counted) past `limit`."""
        held = self._connections.get(user_id, 0)
        if limit > 0 and held >= limit:
            return False
        self._connections[user_id] = held + 1
        return True

    def disconnect(self, user_id: int) -> None:
        held = self._connections.get(user_id, 0) - 1
        if held > 0:
            self._connections[user_id] = held
        else:
            self._connections.pop(user_id, None)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        organization_id: int,
        user_id: int,
        token_hash: str | None,
        wants: Wants,
        *,
        notifications: bool = False,
    ) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(
            organization_id, user_id, token_hash, wants, self.queue_size, notifications
        )
        async with self._dispatching:  # between batches: the position is exact
            if organization_id not in self.positions:
                self.positions[organization_id] = await log_head(organization_id)
            subscriber.start = self.positions[organization_id]
            self._subscribers[organization_id].add(subscriber)
            LIVE_SUBSCRIPTIONS.inc()
        try:
            yield subscriber
        finally:
            self._remove(subscriber)

    def _remove(self, subscriber: Subscriber) -> None:
        group = self._subscribers.get(subscriber.organization_id)
        if group is not None and subscriber in group:
            group.discard(subscriber)
            LIVE_SUBSCRIPTIONS.dec()
            if not group:
                del self._subscribers[subscriber.organization_id]
                self.positions.pop(subscriber.organization_id, None)

    def _drop(self, subscriber: Subscriber, why: SubscriptionEnded) -> None:
        subscriber.end(why, keep_queued=False)
        self._remove(subscriber)
        LIVE_ENDED.labels(why.reason).inc()

    async def _check_sessions(self) -> None:
        """End the subscriptions whose token was revoked or expired or whose user was
        deactivated: at once when a process says so on the bus, and on a timer."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.auth_recheck_seconds):
                    await self._recheck.wait()
            self._recheck.clear()
            subscribers = [sub for group in self._subscribers.values() for sub in group]
            hashes = {sub.token_hash for sub in subscribers if sub.token_hash}
            if not hashes:
                continue
            try:
                valid = await valid_token_hashes(hashes)
            except Exception:
                log.exception("could not check the sessions of open subscriptions")
                continue
            for subscriber in subscribers:
                if subscriber.token_hash and subscriber.token_hash not in valid:
                    self._drop(subscriber, SubscriptionEnded("revoked"))


async def log_head(organization_id: int) -> int:
    """The id of the organization's newest event (0: none yet)."""
    head = (
        await Event.filter(organization_id=organization_id)
        .order_by("-id")
        .first()
        .values_list("id", flat=True)
    )
    return int(cast(int | None, head) or 0)


async def read_logs(positions: dict[int, int], limit: int) -> list[Event]:
    """The events of each organization after its position, at most `limit` of each, in id
    order: one statement, each organization's read an index range of its own."""
    client = Event._meta.db
    columns = ", ".join(f'e."{column}"' for column in columns_of(Event))
    if client.capabilities.dialect == "postgres":
        sql = (
            f"SELECT {columns} FROM unnest($1::int[], $2::bigint[]) AS p(org, after)"
            " CROSS JOIN LATERAL (SELECT * FROM event WHERE organization_id = p.org"
            " AND id > p.after ORDER BY id LIMIT $3) AS e ORDER BY e.id"
        )
        params: list[Any] = [list(positions), list(positions.values()), limit]
    else:  # SQLite: no LATERAL; few organizations share an embedded database's process
        each = (
            f"SELECT * FROM (SELECT {columns} FROM event AS e WHERE e.organization_id = ?"
            " AND e.id > ? ORDER BY e.id LIMIT ?)"
        )
        sql = " UNION ALL ".join(each for _ in positions) + " ORDER BY id"
        params = [value for org, after in positions.items() for value in (org, after, limit)]
    _, rows = await client.execute_query(sql, params)
    return instances(Event, rows)


async def _in_chunks(
    model: type[Any], ids: Iterable[int], field: str = "id", **filters: Any
) -> list[Any]:
    """model.filter(field__in=ids, **filters), a chunk of ids at a time."""
    ordered = sorted(ids)
    rows: list[Any] = []
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        rows += await model.filter(**{f"{field}__in": chunk}, **filters)
    return rows
