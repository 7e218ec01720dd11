"""The list connections and how the tests read them: one page, every page both ways (`walk`),
every row of a top-level list. Shared by the paging, cursor, filter, soft-deletion and nested
connection tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.helpers import Api


def _list_query(field: str, type_name: str, node_fields: str) -> str:
    return f"""
query($first: Int, $after: String, $last: Int, $before: String,
      $filter: {type_name}Filter, $orderBy: {type_name}Order) {{
  {field}(first: $first, after: $after, last: $last, before: $before,
          filter: $filter, orderBy: $orderBy) {{
    totalCount
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {node_fields} }} }}
    nodes {{ id }}
  }}
}}"""


ACCOUNTS = _list_query("accounts", "Account", "id name updatedAt")
CONTACTS = _list_query("contacts", "Contact", "id lastName updatedAt")
LEADS = _list_query("leads", "Lead", "id title updatedAt owner { fullName }")
OPPORTUNITIES = _list_query(
    "opportunities",
    "Opportunity",
    "id name amount expectedCloseDate updatedAt probability stage { position } owner { fullName }",
)
USERS = _list_query("users", "User", "id fullName email")
LISTS = {
    "accounts": ACCOUNTS,
    "contacts": CONTACTS,
    "leads": LEADS,
    "opportunities": OPPORTUNITIES,
    "users": USERS,
}

ACCOUNT_CHILDREN = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String,
      $filter: ContactFilter, $orderBy: ContactOrder, $opportunityFilter: OpportunityFilter) {
  node(id: $id) {
    ... on Account {
      contacts(first: $first, after: $after, last: $last, before: $before,
               filter: $filter, orderBy: $orderBy) {
        totalCount
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id account { id } } }
      }
      opportunities(first: 50, filter: $opportunityFilter, orderBy: {field: AMOUNT}) {
        totalCount
        edges { node { id account { id } } }
      }
    }
  }
}"""
COMMENTS = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  node(id: $id) {
    ... on Deal {
      comments(first: $first, after: $after, last: $last, before: $before) {
        totalCount
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id body } }
      }
    }
  }
}"""
OLDEST_FIRST = {"field": "CREATED_AT", "direction": "ASC"}


async def page(api: Api, query: str, field: str, **variables: Any) -> dict[str, Any]:
    """One connection of a query's data, at a dotted path such as "node.contacts"."""
    data: Any = await api.data(query, **variables)
    for name in field.split("."):
        data = data[name]
    return data


def ids(conn: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in conn["edges"]]


async def walk(
    api: Api, query: str, field: str, *, size: int = 2, backward: bool = False, **variables: Any
) -> list[str]:
    """The ids of every row, paging with first/after (or last/before when backward).

    Checks on the way that each page's pageInfo agrees with its edges, that every page but the
    last is full, that totalCount stays the number of rows, and that no row comes twice.
    """
    seen: list[str] = []
    cursor = None
    totals = set()
    for _ in range(100):
        if backward:
            conn = await page(api, query, field, last=size, before=cursor, **variables)
        else:
            conn = await page(api, query, field, first=size, after=cursor, **variables)
        edges, info, found = conn["edges"], conn["pageInfo"], ids(conn)
        assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
        assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
        if "nodes" in conn:
            assert conn["nodes"] == [{"id": node_id} for node_id in found]
        totals.add(conn["totalCount"])
        if backward:
            assert info["hasNextPage"] is (cursor is not None)
            more, cursor = info["hasPreviousPage"], info["startCursor"]
            seen[:0] = found
        else:
            assert info["hasPreviousPage"] is (cursor is not None)
            more, cursor = info["hasNextPage"], info["endCursor"]
            seen.extend(found)
        assert len(found) == size or not more, "a page short of its size before the end"
        if not more:
            break
    else:
        raise AssertionError("paging never ended")
    assert len(seen) == len(set(seen)), f"rows repeated: {seen}"
    assert totals == {len(seen)}, f"totalCount {totals} for {len(seen)} rows"
    return seen


def field_of(query: str) -> str:
    """The name of the top-level list a query above reads ("accounts" for ACCOUNTS)."""
    return next(name for name, text in LISTS.items() if text == query)


async def ids_of(api: Api, query: str, **variables: Any) -> list[str]:
    """The ids of one page of up to 100 rows of a top-level list; totalCount counts them all."""
    conn = await page(api, query, field_of(query), first=100, **variables)
    assert conn["totalCount"] == len(conn["edges"])
    return ids(conn)


async def all_nodes(api: Api, query: str) -> list[dict[str, Any]]:
    conn = await page(api, query, field_of(query), first=100, orderBy=OLDEST_FIRST)
    return [edge["node"] for edge in conn["edges"]]


def time_of(node: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(node["updatedAt"])
