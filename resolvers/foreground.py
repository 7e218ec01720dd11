"""The API first: the HTTP operations in flight in this process, and the courtesy of work that
comes second (a background job, an organization at its limits) toward them.

The request middleware (observability.RequestLogMiddleware) counts the GraphQL requests over
HTTP this process is answering (`REQUESTS`: not exports, metrics or probes, nor a refusal while
it is held), and once a request's session is known, the organization it is for. A job that
runs in the same process (the embedded runner) awaits `Courtesy.turn()` before each of its steps
(a statement outside a transaction, a message handed to SMTP): while a request is in flight the
job waits until none is, so a request that arrives during a launch waits for at most the job's
current step, not its batch. The job never waits inside a transaction (on SQLite that would hold
the process's one connection). An organization at its limits likewise (schema/engine/gate.py):
before each step of its operations (parsing, validation, execution, each level of its plan's
statements, which run outside any transaction) it waits while another organization's request
is in flight, so that its work does not interleave with theirs on the process's event loop; its
own requests do not count (`Courtesy.owner`).

The wait is bounded, so neither is ever starved: it spends at most `share` of its running time
waiting, and at most `longest` seconds at once; the unused part of that share is kept for at
most two waits, so under a steady stream of requests the job still moves at `1 - share` of its
speed however long it ran before they came. In a worker process no request is ever in
flight: `turn()` returns at once.

While requests are recent (one in flight or ended within `RECENT_SECONDS`), a job keeps its
steps short and out of the requests' way: `turn()` yields to the loop once even when none is
in flight (a request that just arrived is read and counted before the job's next step), and
waits while another of the job's tasks is in one of its transactions (`Courtesy.exclusive()`:
the job's SMTP exchanges do not stretch a transaction that requests queue behind).

While requests are recent, a job also paces itself (`duty` < 1, JOB_BUSY_DUTY): at each turn,
having worked W seconds since its last rest ended (its waits for requests not counted), it
rests W * (1 / duty - 1) (at most `longest`), so that it takes about `duty` of the wall
time, and with it the CPU of the database backends and the mail server working for it: the
machine the requests share is left to them. About: a stretch of work longer than
`longest * duty / (1 - duty)` (86 ms at the defaults) rests only `longest`, and the job's other
tasks working during a rest are not counted; the other way, W is wall time, including the
loop's time on requests, so under load the job takes less. Waits and rests add up: at worst
the job moves at about `(1 - share) * duty` of its speed, bounded, never starved. A launch
has slack against its goal; the requests have none. The job's tasks rest together (one rest
at a time for the whole job).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from dataclasses import dataclass


@dataclass
class Flight:
    """One request counted in flight, and the organization it is for once its session is known
    (`InFlight.own`)."""

    owner: Hashable | None = None


class InFlight:
    """How many HTTP requests this process is answering, how many of them each organization's;
    waiters for the moment none is (or none but one organization's)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = -math.inf  # when a request last began or ended (time.monotonic())
        self._owned: collections.Counter[Hashable] = collections.Counter()
        # Requests giving way (an organization at its limits, waiting in `quiet`), by owner: they
        # do no work meanwhile, so no one waits for them (two organizations at their limits do
        # not wait for each other).
        self._yielding: collections.Counter[Hashable] = collections.Counter()
        self._waiters: list[tuple[Hashable | None, asyncio.Future[None]]] = []

    def enter(self) -> Flight:
        self.count += 1
        self.last = time.monotonic()
        return Flight()

    def recent(self, within: float) -> bool:
        """Whether a request is in flight or ended less than `within` seconds ago."""
        return self.count > 0 or time.monotonic() - self.last < within

    def own(self, flight: Flight, owner: Hashable) -> None:
        """The request is `owner`'s (its organization, once its session is known)."""
        if flight.owner is None:
            flight.owner = owner
            self._owned[owner] += 1
            self._wake()  # one waiting for all but `owner`'s may go

    def leave(self, flight: Flight | None = None) -> None:
        self.last = time.monotonic()
        self.count = max(0, self.count - 1)
        owner = flight.owner if flight is not None else None
        if owner is not None:
            left = self._owned[owner] - 1
            if left > 0:
                self._owned[owner] = left
            else:
                del self._owned[owner]
        self._wake()

    def _wake(self) -> None:
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for besides, waiter in waiting:
                if self.others(besides) > 0:
                    self._waiters.append((besides, waiter))
                elif not waiter.done():
                    waiter.set_result(None)

    def others(self, owner: Hashable | None = None) -> int:
        """Requests in flight and working that are not `owner`'s (all of them when None)."""
        yielding = self._yielding.total()
        if owner is None:
            return self.count - yielding
        return self.count - self._owned.get(owner, 0) - (yielding - self._yielding.get(owner, 0))

    @contextlib.contextmanager
    def away(self, flight: Flight | None = None) -> Iterator[None]:
        """A counted request that waits without working (a refusal held): not counted
        meanwhile. (A request never counted, None: nothing to do.)"""
        if flight is None:
            yield
            return
        owner = flight.owner
        self.leave(flight)
        try:
            yield
        finally:
            self.enter()
            flight.owner = None
            if owner is not None:
                self.own(flight, owner)

    async def quiet(self, at_most: float, besides: Hashable | None = None) -> None:
        """Return once no request is in flight (none but `besides`'s), or after `at_most`
        seconds."""
        if self.others(besides) <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (besides, waiter)
        self._waiters.append(entry)
        if besides is not None:  # a request of `besides`'s, idle meanwhile
            self._yielding[besides] += 1
            self._wake()
        try:
            async with asyncio.timeout(at_most):
                await waiter
        except TimeoutError:
            pass
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
            if besides is not None:
                self._yielding[besides] -= 1
                if self._yielding[besides] <= 0:
                    del self._yielding[besides]


REQUESTS = InFlight()


class Courtesy:
    """One job's (or one organization's at its limits) yielding to this process's requests (see
    the module's doc); `owner`: an organization whose own requests it does not wait for.
    Several tasks of a job (its recording, its SMTP connections) share one: their waits at the
    same moment count once."""

    def __init__(
        self,
        share: float = 0.5,
        longest: float = 0.2,
        requests: InFlight = REQUESTS,
        owner: Hashable | None = None,
        duty: float = 1.0,
    ) -> None:
        self.share = share
        self.duty = duty
        self.longest = longest
        self.requests = requests
        self.owner = owner
        self.started = time.monotonic()
        self.waited = 0.0  # seconds during which at least one of the job's tasks waited
        self.rested = 0.0  # seconds the job rested to keep to its duty
        # The pace (`duty`): when the job's current stretch of work began (its last rest
        # ended), its waits for requests until then, and when the rest under way ends.
        self._rested_at = self.started
        self._waited_at = 0.0
        self._resting_until = -math.inf
        # Seconds of waiting the job may still spend: `share` of each second it runs, kept to
        # at most CREDIT_TURNS waits (a job that ran long without requests does not save up
        # minutes of waiting for when they come); a first wait is allowed.
        self._credit = longest * share
        self._credited = self.started
        self._waiting = 0
        self._since = 0.0
        # The job's tasks in one of their transactions, and the end of each.
        self._exclusive: dict[asyncio.Task[object] | None, asyncio.Event] = {}

    def busy(self) -> bool:
        """Whether this process's requests are recent: the job keeps its steps short."""
        return self.share > 0 and self.requests.recent(RECENT_SECONDS)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Around one of the job's transactions: while requests are recent, the job's other
        tasks wait at their turns until it ends (at most `longest`). (Its own task takes no
        turn inside it.)"""
        task, ended = asyncio.current_task(), asyncio.Event()
        self._exclusive[task] = ended
        try:
            yield
        finally:
            if self._exclusive.get(task) is ended:
                del self._exclusive[task]
            ended.set()

    async def turn(self) -> None:
        """Wait while a request is in flight here (another organization's, for an organization
        at its limits), within the budget of waiting; while requests are recent, let the loop
        run once and wait for the job's transaction under way in another of its tasks."""
        if not self.busy():
            self._rested_at, self._waited_at = time.monotonic(), self.waited  # full speed
            return
        await self._pace()
        task = asyncio.current_task()
        open_ = [ended.wait() for other, ended in self._exclusive.items() if other is not task]
        if open_:  # (short: a transaction takes no turns; bounded all the same)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.longest):
                    await asyncio.gather(*open_)
        else:
            await asyncio.sleep(0)
        if self.requests.others(self.owner) <= 0:
            return
        now = time.monotonic()
        self._credit = min(
            self._credit + (now - self._credited) * self.share, self.longest * CREDIT_TURNS
        )
        self._credited = now
        # (A wait of another of the job's tasks under way is paid for when it ends.)
        ongoing = now - self._since if self._waiting else 0.0
        timeout = min(self.longest, self._credit - ongoing)
        if timeout <= 0:
            return
        if self._waiting == 0:
            self._since = now
        self._waiting += 1
        try:
            await self.requests.quiet(timeout, self.owner)
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                spent = time.monotonic() - self._since
                self.waited += spent
                self._credit -= spent

    async def _pace(self) -> None:
        """Rest so that the job works about `duty` of the time (see the module's doc)."""
        if self.duty >= 1:
            return
        now = time.monotonic()
        if now < self._resting_until:  # another of the job's tasks rests: rest with it
            await asyncio.sleep(self._resting_until - now)
            return
        worked = now - self._rested_at - (self.waited - self._waited_at)
        rest = min(worked * (1 / max(self.duty, 0.01) - 1), self.longest)
        if rest <= 0:
            return
        self._resting_until = self._rested_at = now + rest
        self._waited_at = self.waited
        self.rested += rest
        await asyncio.sleep(rest)


# The most waiting a job saves up, in waits of `longest`.
CREDIT_TURNS = 2
# Requests that ended less than this long ago are recent: the job keeps its steps short.
RECENT_SECONDS = 1.0
