"""The GraphQL schema: the sum of one slice per domain."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig

from config import Settings
from schema import enums  # noqa: F401  (gives the model enums their GraphQL descriptions)
from schema.account import Account, AccountMutations, AccountQueries
from schema.activity import Activity, ActivityMutations, ActivityQueries
from schema.auth import AuthMutations
from schema.board import BoardQueries
from schema.campaign import CampaignMutations, CampaignQueries
from schema.comment import Comment
from schema.contact import Contact, ContactMutations, ContactQueries
from schema.deal import DealMutations
from schema.engine.cost import FragmentBudget, QueryCost
from schema.engine.documents import DocumentCache
from schema.engine.gate import Gatekeeper, OrganizationShare
from schema.engine.plans import ComparingExecutor, PlannedExecutor
from schema.event import NotificationMutations, NotificationQueries
from schema.extensions import ErrorCodes, OperationScope, Validation
from schema.forecast import ForecastMutations, ForecastQueries
from schema.job import JobQueries
from schema.lead import Lead, LeadMutations, LeadQueries
from schema.lifecycle import LifecycleMutations
from schema.live import LiveQueries, Subscription
from schema.message import Message, MessageMutations, MessageQueries
from schema.node import NodeQueries
from schema.opportunity import Opportunity, OpportunityMutations, OpportunityQueries
from schema.organization import OrganizationQueries, PipelineMutations
from schema.product import ProductMutations, ProductQueries
from schema.scalars import SCALARS
from schema.segment import SegmentMutations, SegmentQueries
from schema.sync import ApiKeyMutations, ApiKeyScopes, SyncQueries
from schema.user import UserMutations, UserQueries
from schema.webhook import WebhookMutations, WebhookQueries


@strawberry.type(description="Everything a client can read.")
class Query(
    NodeQueries,
    UserQueries,
    OrganizationQueries,
    AccountQueries,
    ContactQueries,
    LeadQueries,
    OpportunityQueries,
    BoardQueries,
    NotificationQueries,
    LiveQueries,
    ActivityQueries,
    MessageQueries,
    ForecastQueries,
    ProductQueries,
    SegmentQueries,
    CampaignQueries,
    JobQueries,
    SyncQueries,
    WebhookQueries,
):
    pass


@strawberry.type(description="Everything a client can change. Each mutation is one transaction.")
class Mutation(
    AuthMutations,
    UserMutations,
    AccountMutations,
    ContactMutations,
    LeadMutations,
    OpportunityMutations,
    DealMutations,
    NotificationMutations,
    ActivityMutations,
    MessageMutations,
    LifecycleMutations,
    PipelineMutations,
    ForecastMutations,
    ProductMutations,
    SegmentMutations,
    CampaignMutations,
    ApiKeyMutations,
    WebhookMutations,
):
    pass


class CrmSchema(strawberry.Schema):
    hide_suggestions = False

    def process_errors(self, errors: list, execution_context: object = None) -> None:
        """Strawberry logs every error with a traceback, client mistakes included; ErrorCodes
        logs the unexpected ones (with the request id) instead."""

    def _get_custom_context_kwargs(
        self, operation_extensions: dict[str, Any] | None = None, *, sync: bool = False
    ) -> dict[str, Any]:
        kwargs = super()._get_custom_context_kwargs(operation_extensions, sync=sync)
        if self.hide_suggestions:
            kwargs["hide_suggestions"] = True  # graphql-core's coercion of variables
        return kwargs


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema, enforcing and reporting the limits of `settings` (depth, aliases, tokens,
    cost) whatever app serves it."""
    # The depth and alias limits are validation rules. Strawberry's QueryDepthLimiter and
    # MaxAliasesLimiter build their rule, a new class, for every operation: CPU on every request,
    # and 4.5 KiB that each live subscription kept. The rules are built once here instead.
    limits: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None),
        alias_rule(settings.max_aliases),
    ]
    extensions: list = [
        FragmentBudget,  # first: before any validation walks a document
        DocumentCache,  # a text that validated before is neither parsed nor validated again
        lambda: AddValidationRules(limits),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        ErrorCodes,
        OperationScope,
        # Validation, then what refuses a valid document (in this order, before it runs):
        lambda: Validation(hide_suggestions=not settings.introspection),
        Gatekeeper,
        ApiKeyScopes,
        lambda: QueryCost(settings=settings),
        OrganizationShare,
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    executor = None
    if settings.operation_plans:
        executor = ComparingExecutor if settings.plans_compare else PlannedExecutor
    schema = CrmSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Lead, Opportunity, Comment, Activity, Message, Account, Contact],
        extensions=extensions,
        config=StrawberryConfig(relay_max_results=100, scalar_map=SCALARS),
        execution_context_class=executor,
    )
    schema.hide_suggestions = not settings.introspection
    return schema
