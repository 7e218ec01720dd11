"""Webhooks: the endpoints admins register, and the deliveries made to them."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from models import DeliveryStatus, WebhookStatus
from models import WebhookDelivery as WebhookDeliveryRow
from models import WebhookEndpoint as WebhookEndpointRow
from resolvers import webhook as webhooks
from schema.base import Connection, Info, connection, context, page_request, pk_of
from schema.records import Declared, column, record

WebhookStatusEnum = strawberry.enum(
    WebhookStatus,
    name="WebhookStatus",
    description="ACTIVE: delivering. PAUSED: by an admin. DISABLED: failing for longer than "
    "the retry window. A paused or disabled endpoint resumes where it stood.",
)
DeliveryStatusEnum = strawberry.enum(
    DeliveryStatus,
    name="WebhookDeliveryStatus",
    description="PENDING: failing, retried with backoff. SUCCEEDED: answered 2xx. FAILED: "
    "given up on when its endpoint was disabled.",
)


@strawberry.type(description="One attempt to deliver a change.")
class WebhookAttempt:
    at: datetime
    response_code: int | None = strawberry.field(description="None when no answer came.")
    duration_ms: int
    error: str | None = strawberry.field(description="Why it failed; None when it succeeded.")


@record(WebhookEndpointRow, read=None, node=False)
@strawberry.type(description="A URL of a partner's that receives the organization's changes.")
class WebhookEndpoint(relay.Node, Declared):
    id: relay.NodeID[int]
    url: str
    description: str
    change_types: list[str] = strawberry.field(
        description="The record types it receives (as `changes(types:)` names them); empty: all."
    )
    status: WebhookStatus
    disabled_reason: str | None
    cursor: str = strawberry.field(
        description="Where delivery stands: the `changes` cursor of the last change delivered."
    )
    failing_since: datetime | None = strawberry.field(
        description="Since when the change after `cursor` fails to be delivered."
    )
    retry_at: datetime | None = strawberry.field(description="Its next attempt.")
    previous_secret_until: datetime | None = strawberry.field(
        description="After a rotation: until when the previous secret signs too."
    )
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="An endpoint and its signing secret, which is shown this once.")
class WebhookEndpointWithSecret:
    webhook_endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="whsec_...: verify each delivery's webhook-signature with it (Standard "
        "Webhooks)."
    )


@record(WebhookDeliveryRow, read=None, node=False)
@strawberry.type(description="One change sent to an endpoint, and its attempts.")
class WebhookDelivery(relay.Node, Declared):
    id: relay.NodeID[int]
    webhook_id: str = strawberry.field(
        description="The change's cursor, sent as webhook-id: the same for every attempt."
    )
    record_type: str
    op: str
    status: DeliveryStatus
    attempt_count: int
    attempts: list[WebhookAttempt] = column(
        convert=lambda stored: [
            WebhookAttempt(
                at=datetime.fromisoformat(item["at"]),
                response_code=item["responseCode"],
                duration_ms=item["durationMs"],
                error=item["error"],
            )
            for item in stored
        ],
        description="The latest attempts, oldest first.",
    )
    redelivery: bool = strawberry.field(description="Sent again on an admin's request.")
    created_at: datetime
    updated_at: datetime


@strawberry.input(description="A new webhook endpoint.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="An http(s) URL at a public address.")
    change_types: list[str] | None = strawberry.field(
        default=None, description="Record types to receive (`changes(types:)`); all if omitted."
    )
    description: str | None = None


@strawberry.input(description="What to change of a webhook endpoint (omitted: unchanged).")
class UpdateWebhookEndpointInput:
    url: str | None = None
    change_types: list[str] | None = strawberry.field(
        default=None, description="[]: every record type."
    )
    description: str | None = None


def _endpoint_id(id: strawberry.ID) -> int:
    return pk_of(id, "id", "WebhookEndpoint")


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The organization's webhook endpoints (admins).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        rows = await webhooks.list_endpoints(context(info))
        return [WebhookEndpoint.from_row(row) for row in rows]

    @strawberry.field(
        description="An endpoint's deliveries, newest first (the latest "
        "WEBHOOK_DELIVERIES_KEPT), with their attempts (admins)."
    )
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        pk = pk_of(endpoint_id, "endpointId", "WebhookEndpoint")
        page = await webhooks.list_deliveries(
            context(info), pk, page_request(info, first, after, None, None)
        )
        return connection(page, WebhookDelivery.from_row)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Register an endpoint: it receives each change of the organization's "
        "change feed made from now on, in order, signed with the secret in the answer (shown "
        "this once). Admins, signed in as themselves."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> WebhookEndpointWithSecret:
        row, secret = await webhooks.create_endpoint(
            context(info), input.url, input.change_types, input.description
        )
        return WebhookEndpointWithSecret(
            webhook_endpoint=WebhookEndpoint.from_row(row), secret=secret
        )

    @strawberry.mutation(description="Change an endpoint's URL, change types or description.")
    async def update_webhook_endpoint(
        self, info: Info, id: strawberry.ID, input: UpdateWebhookEndpointInput
    ) -> WebhookEndpoint:
        values = {
            "url": input.url,
            "change_types": input.change_types,
            "description": input.description,
        }
        row = await webhooks.update_endpoint(context(info), _endpoint_id(id), values)
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation(description="Stop delivering to an endpoint; changes wait for it.")
    async def pause_webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint:
        row = await webhooks.pause_endpoint(context(info), _endpoint_id(id))
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation(
        description="Deliver again to a paused or disabled endpoint, from where it stood."
    )
    async def resume_webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint:
        row = await webhooks.resume_endpoint(context(info), _endpoint_id(id))
        return WebhookEndpoint.from_row(row)

    @strawberry.mutation(
        description="A new signing secret, shown this once; the previous one signs too for "
        "24 hours, so that the receiver can switch."
    )
    async def rotate_webhook_secret(
        self, info: Info, id: strawberry.ID
    ) -> WebhookEndpointWithSecret:
        row, secret = await webhooks.rotate_secret(context(info), _endpoint_id(id))
        return WebhookEndpointWithSecret(
            webhook_endpoint=WebhookEndpoint.from_row(row), secret=secret
        )

    @strawberry.mutation(description="Delete an endpoint and its deliveries.")
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        await webhooks.delete_endpoint(context(info), _endpoint_id(id))
        return id

    @strawberry.mutation(
        description="Send every change after `fromCursor` (a `changes` cursor) again, in order, "
        "then carry on. Each keeps its webhook-id, so receivers can tell a redelivery."
    )
    async def redeliver_webhooks(
        self, info: Info, endpoint_id: strawberry.ID, from_cursor: str
    ) -> WebhookEndpoint:
        pk = pk_of(endpoint_id, "endpointId", "WebhookEndpoint")
        row = await webhooks.redeliver(context(info), pk, from_cursor)
        return WebhookEndpoint.from_row(row)
