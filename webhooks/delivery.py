"""The delivery loop: every server process runs one (WEBHOOK_DELIVERY, on by default).

Each endpoint follows the change feed from its own cursor, stored on its row. To deliver an
endpoint, a process claims it by writing a lease on the row (its name and an expiry) with a
conditional UPDATE, so that with any number of processes, on PostgreSQL or SQLite, one process
at a time delivers a given endpoint; the holder renews the lease as it goes, and after a crash
(kill -9) another process takes the endpoint over once the lease has expired.

The holder renders the next page of the feed after the cursor (webhooks/payload.py) and posts its
changes one at a time, in order; after each success the cursor moves past it. A failure
stops the endpoint there: the same change is retried after an exponential backoff with jitter,
and once it has failed for WEBHOOK_RETRY_WINDOW_SECONDS the endpoint is disabled and the
organization's admins are notified. So every change is delivered at least once, in order; a
change is sent twice only when a process dies (or loses its lease) between the receiver's
answer and the cursor's update, with the same webhook-id both times.

The loop wakes on the hub's doorbell (an organization's logs grew), and on a poll
(WEBHOOK_POLL_SECONDS) that covers for lost doorbells and for retries coming due. It delivers at
most WEBHOOK_CONCURRENCY endpoints at once, at most WEBHOOK_ORG_CONCURRENCY of one
organization: an organization's dead endpoints hold at most its own places, for one attempt's
timeout each, and are then left to their backoff without holding any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import strawberry
from standardwebhooks import Webhook
from tortoise.expressions import Q

from config import Settings
from models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookStatus
from resolvers import sync
from resolvers.cursors import encode
from resolvers.webhook import notify_disabled
from webhooks import addresses
from webhooks.payload import FeedError, Renderer
from webhooks.sealing import Sealer, SecretsError, sealer

log = logging.getLogger("crm.webhooks")

PAGE = 100  # changes rendered at a time for an endpoint
ATTEMPTS_KEPT = 20  # per delivery
USER_AGENT = "crm-graph-webhooks/1"


@dataclass
class Attempt:
    at: datetime
    response_code: int | None
    duration_ms: int
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def stored(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "responseCode": self.response_code,
            "durationMs": self.duration_ms,
            "error": self.error,
        }


def backoff(failures: int, base: float, ceiling: float) -> float:
    """Seconds before the next attempt: doubling from `base` up to `ceiling`, each drawn
    between half and all of it (jitter, so that endpoints failing together spread out)."""
    delay = min(ceiling, base * 2 ** min(failures - 1, 40))
    return delay * random.uniform(0.5, 1.0)


def signing_secrets(endpoint: WebhookEndpoint, at: datetime, opener: Sealer) -> list[str]:
    """The secret, and during a rotation's grace the previous one too, decrypted (SecretsError
    when they cannot be)."""
    secrets = [opener.open(endpoint.secret)]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > at:
        secrets.append(opener.open(endpoint.previous_secret))
    return secrets


def signature(secrets: list[str], webhook_id: str, at: datetime, body: str) -> str:
    """webhook-signature: signed with each secret (space-separated, as Standard Webhooks has
    it)."""
    return " ".join(Webhook(secret).sign(webhook_id, at, body) for secret in secrets)


class Deliverer:
    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        self.settings = settings
        self.renderer = Renderer(schema, settings)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._rung: set[int] | None = set()  # None: every organization
        self._running: dict[int, asyncio.Task[None]] = {}  # endpoint id -> its delivery
        self._per_org: dict[int, int] = defaultdict(int)
        self._poll_after = 0  # where the poll's next batch starts (endpoint id)
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    # Lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = self.settings.webhook_timeout_seconds
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the address checked is the one used
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(
                max_connections=self.settings.webhook_concurrency, max_keepalive_connections=100
            ),
        )
        self._rung = None
        self._wake.set()
        self._task = asyncio.create_task(self._loop(), name="webhooks scanner")

    async def stop(self) -> None:
        tasks = [task for task in [self._task, *self._running.values()] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        # Leave the endpoints to the other processes at once, rather than at the lease's end.
        with contextlib.suppress(Exception):
            await WebhookEndpoint.filter(lease_holder=self.holder).update(
                lease_holder=None, lease_expires_at=None
            )

    def ring(self, organizations: Iterable[int] | None) -> None:
        """The hub's doorbell: these organizations' logs grew (None: any may have)."""
        if organizations is None:
            self._rung = None
        elif self._rung is not None:
            self._rung.update(organizations)
        self._wake.set()

    # Finding endpoints to deliver ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.settings.webhook_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                self._rung = None  # the poll looks at every organization
            self._wake.clear()
            rung, self._rung = self._rung, set()
            try:
                await self.scan(rung)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is unreachable for now: the poll tries again
                log.exception("could not scan the webhook endpoints")

    async def scan(self, organizations: set[int] | None) -> None:
        """Claim and start delivering the endpoints that have something to send."""
        if organizations is not None and not organizations:
            return
        now = datetime.now(UTC)
        query = WebhookEndpoint.filter(status=WebhookStatus.ACTIVE).filter(
            Q(retry_at__isnull=True) | Q(retry_at__lte=now),
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
        )
        batch = self.settings.webhook_scan_batch
        if organizations is not None:  # the doorbell: these organizations' endpoints
            query = query.filter(organization_id__in=sorted(organizations))
        else:  # the poll: the next batch of all, round and round, so none waits on the first
            query = query.filter(id__gt=self._poll_after)
        found = await query.order_by("id").limit(batch)
        if organizations is None:
            self._poll_after = found[-1].id if len(found) == batch else 0
        candidates = [endpoint for endpoint in found if endpoint.id not in self._running]
        if not candidates:
            return
        heads = await sync.newest_changes(sorted({e.organization_id for e in candidates}))
        for endpoint in candidates:
            behind = endpoint.position < heads[endpoint.organization_id] or (
                endpoint.position == 0  # a snapshot cursor (after a redelivery request)
            )
            if not behind or not self._has_room(endpoint.organization_id):
                continue
            if await self._claim(endpoint, now):
                self._start(endpoint)

    def _has_room(self, organization_id: int) -> bool:
        return (
            len(self._running) < self.settings.webhook_concurrency
            and self._per_org[organization_id] < self.settings.webhook_org_concurrency
        )

    async def _claim(self, endpoint: WebhookEndpoint, now: datetime) -> bool:
        until = now + timedelta(seconds=self.settings.webhook_lease_seconds)
        claimed = (
            await WebhookEndpoint.filter(id=endpoint.id, status=WebhookStatus.ACTIVE)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .update(lease_holder=self.holder, lease_expires_at=until)
        )
        return claimed != 0  # (test for zero: see resolvers/sync.py on update counts)

    def _start(self, endpoint: WebhookEndpoint) -> None:
        organization_id = endpoint.organization_id
        self._per_org[organization_id] += 1
        task = asyncio.create_task(self._deliver(endpoint.id), name=f"webhooks {endpoint.id}")
        self._running[endpoint.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(endpoint.id, None)
            self._per_org[organization_id] -= 1
            if self._per_org[organization_id] <= 0:
                self._per_org.pop(organization_id, None)

        task.add_done_callback(done)

    # Delivering one endpoint -----------------------------------------------------------------

    async def _deliver(self, endpoint_id: int) -> None:
        more = False
        try:
            more = await self._deliver_pages(endpoint_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering webhook endpoint %s failed", endpoint_id)
        finally:
            with contextlib.suppress(Exception):
                await WebhookEndpoint.filter(id=endpoint_id, lease_holder=self.holder).update(
                    lease_holder=None, lease_expires_at=None
                )
        if more:  # a page's worth delivered: look again at once, leaving room to others
            self.ring(None)

    async def _deliver_pages(self, endpoint_id: int) -> bool:
        """Deliver pages of changes until the feed has no more, a change fails, or the lease is
        lost; whether more may be waiting."""
        for _ in range(10):
            endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id, lease_holder=self.holder)
            if endpoint is None or endpoint.status != WebhookStatus.ACTIVE:
                return False
            heads = await sync.newest_changes([endpoint.organization_id])
            head = heads[endpoint.organization_id]
            try:
                page = await self.renderer.render(
                    endpoint.organization_id, endpoint.cursor, endpoint.change_types, PAGE
                )
            except FeedError as error:
                if error.code != "RESYNC_REQUIRED":
                    raise
                await self._give_up(endpoint, f"the change feed refused its cursor: {error}")
                return False
            if not page.entries:
                await self._skip_to(endpoint, page.end_cursor, head)
                return False
            for entry in page.entries:
                if not await self._send(endpoint, entry):
                    return False
            if not page.has_next_page:
                return False
        return True

    async def _skip_to(self, endpoint: WebhookEndpoint, end_cursor: str, head: int) -> None:
        """No change of its types after its cursor: move it to the newest change seen before
        reading (every change up to it had committed), so the scans stop finding it behind."""
        cursor, position = end_cursor, sync.cursor_position(end_cursor)
        if position and head > position:
            cursor, position = encode("C", head), head
        if cursor != endpoint.cursor:
            await WebhookEndpoint.filter(
                id=endpoint.id, lease_holder=self.holder, cursor=endpoint.cursor
            ).update(cursor=cursor, position=position)

    async def _send(self, endpoint: WebhookEndpoint, entry: dict[str, Any]) -> bool:
        """Post one change; record the attempt; whether it was delivered."""
        webhook_id = entry["cursor"]
        body = orjson.dumps(entry).decode()
        attempt = await self.post(endpoint, webhook_id, body)
        position = sync.cursor_position(webhook_id)
        now = datetime.now(UTC)
        if attempt.succeeded:
            await self._record(endpoint, entry, attempt, DeliveryStatus.SUCCEEDED, position)
            moved = await WebhookEndpoint.filter(id=endpoint.id, lease_holder=self.holder).update(
                cursor=webhook_id,
                position=position,
                failing_since=None,
                failures=0,
                retry_at=None,
                lease_expires_at=now + timedelta(seconds=self.settings.webhook_lease_seconds),
            )
            endpoint.cursor, endpoint.position, endpoint.failures = webhook_id, position, 0
            endpoint.failing_since = None
            return moved != 0
        failing_since = endpoint.failing_since or attempt.at
        if now - failing_since >= timedelta(seconds=self.settings.webhook_retry_window_seconds):
            await self._record(endpoint, entry, attempt, DeliveryStatus.FAILED, position)
            await self._give_up(endpoint, f"{webhook_id} failed since {failing_since:%c} UTC")
            return False
        await self._record(endpoint, entry, attempt, DeliveryStatus.PENDING, position)
        failures = endpoint.failures + 1
        delay = backoff(
            failures,
            self.settings.webhook_backoff_seconds,
            self.settings.webhook_backoff_max_seconds,
        )
        await WebhookEndpoint.filter(id=endpoint.id, lease_holder=self.holder).update(
            failing_since=failing_since,
            failures=failures,
            retry_at=now + timedelta(seconds=delay),
        )
        return False

    async def _record(
        self,
        endpoint: WebhookEndpoint,
        entry: dict[str, Any],
        attempt: Attempt,
        status: DeliveryStatus,
        position: int,
    ) -> None:
        """The delivery of this change: the row of its earlier failed attempts, or a new one."""
        pending = None
        if endpoint.failures:
            pending = (
                await WebhookDelivery.filter(
                    organization_id=endpoint.organization_id,
                    endpoint_id=endpoint.id,
                    webhook_id=entry["cursor"],
                    status=DeliveryStatus.PENDING,
                )
                .order_by("-id")
                .first()
            )
        if pending is not None:
            pending.status = status
            pending.attempt_count += 1
            pending.attempts = [*pending.attempts, attempt.stored()][-ATTEMPTS_KEPT:]
            await pending.save(update_fields=["status", "attempt_count", "attempts", "updated_at"])
            return
        delivery = await WebhookDelivery.create(
            organization_id=endpoint.organization_id,
            endpoint_id=endpoint.id,
            webhook_id=entry["cursor"],
            record_type=entry["recordType"],
            op=entry["op"],
            status=status,
            attempt_count=1,
            attempts=[attempt.stored()],
            redelivery=0 < position <= endpoint.redeliver_through,
        )
        if delivery.id % 50 == 0:  # now and then: keep the latest WEBHOOK_DELIVERIES_KEPT
            await self._prune(endpoint)

    async def _prune(self, endpoint: WebhookEndpoint) -> None:
        kept = self.settings.webhook_deliveries_kept
        scope = WebhookDelivery.filter(
            organization_id=endpoint.organization_id, endpoint_id=endpoint.id
        )
        oldest_kept = await scope.order_by("-id").offset(kept - 1).first()
        if oldest_kept is not None:
            await scope.filter(id__lt=oldest_kept.id).delete()

    async def _give_up(self, endpoint: WebhookEndpoint, reason: str) -> None:
        disabled = await WebhookEndpoint.filter(
            id=endpoint.id, lease_holder=self.holder, status=WebhookStatus.ACTIVE
        ).update(status=WebhookStatus.DISABLED, disabled_reason=reason[:500], retry_at=None)
        if disabled:
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
            await notify_disabled(endpoint, reason)

    # HTTP ------------------------------------------------------------------------------------

    async def post(self, endpoint: WebhookEndpoint, webhook_id: str, body: str) -> Attempt:
        """One attempt: to the address checked, with no redirect followed and at most
        WEBHOOK_RESPONSE_BYTES of the answer read."""
        assert self._http is not None
        at = datetime.now(UTC)
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            secrets = signing_secrets(endpoint, at, sealer(self.settings))
            target = addresses.parse(endpoint.url)
            address = await addresses.resolve(target, self.settings.webhook_allow_private_addresses)
            host = f"[{address}]" if address.version == 6 else str(address)
            named = f"[{target.host}]" if ":" in target.host else target.host
            default_port = 443 if target.scheme == "https" else 80
            headers = {
                "host": named if target.port == default_port else f"{named}:{target.port}",
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signature(secrets, webhook_id, at, body),
            }
            url = f"{target.scheme}://{host}:{target.port}{target.path}"
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = self._http.build_request(
                "POST", url, content=body.encode(), headers=headers, extensions=extensions
            )
            response = await self._http.send(request, stream=True)
            try:
                code = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= self.settings.webhook_response_bytes:
                        break
            finally:
                await response.aclose()
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (" (redirects are not followed)" if code < 400 else "")
        except SecretsError as unreadable:  # nothing is sent unsigned: retried, then disabled
            error = str(unreadable)
            log.error("webhook endpoint %s cannot be signed: %s", endpoint.id, unreadable)
        except addresses.Refused as refused:
            error = f"refused: {refused}"
        except httpx.TimeoutException:
            error = f"timed out after {self.settings.webhook_timeout_seconds:g} s"
        except (httpx.HTTPError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"[:300] or type(failure).__name__
        duration = int((time.perf_counter() - started) * 1000)
        return Attempt(at, code, duration, error)
