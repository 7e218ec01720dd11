"""Statements built once per shape (resolvers/statements.py): the same SQL and parameters as
Tortoise renders, for every value; anything a shape cannot hold is rendered by Tortoise."""

from __future__ import annotations

from datetime import date

from tortoise.expressions import Q, Subquery

from models import Opportunity, OpportunityFollower, Visibility
from resolvers import statements
from resolvers.pagination import count_sql
from resolvers.statements import Statements, render
from tests.test_pipeline_sql import PIPELINE, seed_pipeline


def seller_page(org_id: int, viewer: int, team: list[int], after: tuple[int, int] | None):
    """The seller's pipeline page as resolvers build it: the read rule, a keyset, a limit."""
    followed = Subquery(OpportunityFollower.filter(user_id=viewer).values("record_id"))
    query = Opportunity.filter(organization_id=org_id, deleted_at__isnull=True).filter(
        Q(visibility=Visibility.ORGANIZATION) | Q(owner_id__in=[viewer, *team]) | Q(id__in=followed)
    )
    if after is not None:
        amount, pk = after
        query = query.filter(
            Q(amount_cents__lte=amount) & (Q(amount_cents__lt=amount) | Q(id__lt=pk))
        )
    return query.order_by("-amount_cents", "-id").limit(51)


async def test_a_shape_gives_tortoises_statement_for_every_value(live_server):
    cache = Statements()
    cases = [
        (1, 10, [11, 12], None),
        (2, 20, [21, 22], (5_000, 7)),  # same shapes as the first, other values
        (3, 30, [31, 32], (900, 3)),
        (4, 40, [], None),  # a shorter team: another shape
        (5, 50, [51, 52], None),
    ]
    for org_id, viewer, team, after in cases:
        query = seller_page(org_id, viewer, team, after)
        assert cache.sql(query) == render(seller_page(org_id, viewer, team, after))
        counted = query.order_by().limit(10_001).values_list("id", flat=True)
        assert cache.sql(counted) == render(counted)
    kept = [shape for shape, template in cache._shapes.items() if template is not None]
    # page without / with a cursor, team of two / none, and the counts of each
    assert len(kept) == len(cache._shapes) == 6


async def test_what_changes_the_text_is_part_of_the_shape(live_server):
    """A value whose truth or length changes the SQL (an empty list, a limit of 0, isnull,
    None) gets a shape of its own, never another shape's statement."""
    cache = Statements()
    queries = [
        lambda: Opportunity.filter(organization_id=1, id__in=[]),
        lambda: Opportunity.filter(organization_id=1, id__in=[4, 5]),
        lambda: Opportunity.filter(organization_id=1, deleted_at__isnull=True),
        lambda: Opportunity.filter(organization_id=1, deleted_at__isnull=False),
        lambda: Opportunity.filter(organization_id=1, contact_id=None),
        lambda: Opportunity.filter(organization_id=1).limit(0),
        lambda: Opportunity.filter(organization_id=1).limit(7),
        lambda: Opportunity.filter(organization_id=1).order_by("name"),
        lambda: Opportunity.filter(organization_id=1).order_by("-name"),
        lambda: Opportunity.filter(organization_id=1, visibility=Visibility.PRIVATE),
        lambda: Opportunity.filter(organization_id=1, visibility=Visibility.ORGANIZATION),
        lambda: Opportunity.exclude(organization_id=1),
        lambda: Opportunity.filter(organization_id=1, deleted_at__isnull=0),
        lambda: Opportunity.filter(organization_id=1, deleted_at__isnull=2),
        lambda: Opportunity.filter(organization_id=1).limit(7).values_list("id", flat=True),
        lambda: Opportunity.filter(organization_id=1).limit(0).values_list("id", flat=True),
        lambda: Opportunity.filter(organization_id=1).limit(False).values_list("id", flat=True),
        lambda: Opportunity.filter(organization_id=1).limit(0.0),  # type: ignore[arg-type]
    ]
    for _ in range(2):  # learnt, then from the cache
        for make in queries:
            assert typed(cache.sql(make())) == typed(render(make()))


def typed(statement):
    sql, params = statement
    return sql, [(type(param), param) for param in params]


async def test_a_marker_a_field_refuses_leaves_the_shape_to_tortoise(live_server):
    """A three-letter text column given an integer: Tortoise renders '1', a marker would be
    too long for the column: the shape is unfit, never an error."""
    cache = Statements()
    for _ in range(2):
        query = Opportunity.filter(organization_id=1, currency=1)
        assert cache.sql(query) == render(query)
    assert list(cache._shapes.values()) == [None]


async def test_one_organization_cannot_push_out_the_others_shapes(live_server):
    """Each length of a list is a shape: a client sending ever new lengths fills its own share
    of the cache, then its new shapes are rendered by Tortoise; the others' stay."""
    cache = Statements(kept=8, per_owner=3)
    token = statements.OWNER.set(2)
    try:
        cache.sql(Opportunity.filter(organization_id=2, owner_id__in=[1]))
    finally:
        statements.OWNER.reset(token)
    token = statements.OWNER.set(1)
    try:
        for length in range(1, 20):
            query = Opportunity.filter(organization_id=1, owner_id__in=list(range(length)))
            assert cache.sql(query) == render(query)
    finally:
        statements.OWNER.reset(token)
    assert len(cache._shapes) == 4  # organization 2's, and 3 of organization 1's
    assert cache._held == {1: 3, 2: 1}
    other = Opportunity.filter(organization_id=2, owner_id__in=[5])
    assert cache.sql(other) == render(other)
    assert statements.KEPT._value.get() > 0
    long = Opportunity.filter(
        organization_id=1, owner_id__in=list(range(statements.LIST_SLOTS + 1))
    )
    assert cache.sql(long) == render(long)
    assert len(cache._shapes) == 4  # a long list is not shaped


async def test_values_a_shape_cannot_hold_arerendered_each_time(live_server):
    cache = Statements()
    texts = Opportunity.filter(organization_id=1, name__icontains="acme")
    dates = Opportunity.filter(organization_id=1, expected_close_date__gte=date(2027, 1, 1))
    for query in (texts, dates):
        assert cache.sql(query) == render(query)
    assert not cache._shapes  # not even tried


async def test_a_shape_whose_markers_do_not_land_is_unfit(live_server):
    """An integer that Tortoise converts (a boolean column given 1) does not land among the
    parameters as given: the shape is marked unfit and rendered by Tortoise each time."""
    cache = Statements()
    for value in (1, 0, 1):
        query = Opportunity.filter(organization_id=3, probability_overridden=value)
        assert cache.sql(query) == render(query)
    assert list(cache._shapes.values()) == [None]


async def test_the_cache_is_bounded(live_server):
    cache = Statements(kept=2)
    for size in (1, 2, 3):
        cache.sql(Opportunity.filter(id__in=list(range(size))))
    assert len(cache._shapes) == 2


async def test_the_count_reads_the_cached_shape(live_server):
    before = statements.KEPT._value.get()
    query = seller_page(9, 90, [91], None)
    first = count_sql(query, 10_000)
    again = count_sql(seller_page(8, 80, [81], None), 10_000)
    assert first[0] == again[0] and first[1] != again[1]
    assert statements.KEPT._value.get() > before


async def test_the_pipeline_page_is_built_from_the_cache(org):
    """The seller's page and count come from the cache from the second request on (its
    answers are the same: the suite checks every cached statement against Tortoise's)."""
    await seed_pipeline(org.seller.id, 12)
    first = await org.seller.api.data(PIPELINE, first=5)
    before = statements.KEPT._value.get()
    again = await org.seller.api.data(PIPELINE, first=5)
    assert again == first
    assert statements.KEPT._value.get() >= before + 1
