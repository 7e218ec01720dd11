"""A GraphQL client over HTTP and small generators of test data, all through the public API."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from schema.engine import plans

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


class GraphQLFailed(AssertionError):
    pass


class Api:
    def __init__(
        self, http: httpx.AsyncClient, token: str | None = None, *, compared: bool = True
    ) -> None:
        self.http = http
        self.token = token
        self.compared = compared

    def as_(self, token: str | None) -> Api:
        return Api(self.http, token, compared=self.compared)

    def uncompared(self) -> Api:
        """The same caller, whose requests the server does not also run on graphql-core under
        compare mode: for tests that count the statements a request runs."""
        return Api(self.http, self.token, compared=False)

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if not self.compared:
            headers[plans.NO_COMPARE] = "off"
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        mismatches = list(plans.MISMATCHES)  # the suite's own server runs in this process
        plans.MISMATCHES.clear()
        assert not mismatches, "\n\n".join(mismatches)
        return response.json()

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of a request that must succeed."""
        body = await self.post(query, variables)
        if body.get("errors"):
            raise GraphQLFailed(body["errors"])
        return body["data"]

    async def error(self, query: str, **variables: Any) -> dict[str, Any]:
        """The first error of a request that must fail."""
        body = await self.post(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]

    async def error_code(self, query: str, **variables: Any) -> str:
        return (await self.error(query, **variables))["extensions"]["code"]


SIGN_UP = """
mutation($input: SignUpInput!) {
  signUp(input: $input) { token user { id email role } }
}"""
CREATE_USER = """
mutation($input: CreateUserInput!) { createUser(input: $input) { id email role } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { token }
}"""
CREATE_ACCOUNT = """
mutation($input: CreateAccountInput!) { createAccount(input: $input) { id name owner { id } } }"""
CREATE_CONTACT = """
mutation($input: CreateContactInput!) {
  createContact(input: $input) { id firstName lastName email account { id } }
}"""
CREATE_OPPORTUNITY = """
mutation($input: CreateOpportunityInput!) {
  createOpportunity(input: $input) {
    id name amount currency probability status version visibility
    stage { id name } owner { id } account { id } contact { id }
  }
}"""
CREATE_LEAD = """
mutation($input: CreateLeadInput!) {
  createLead(input: $input) { id title status version visibility owner { id } contact { id } }
}"""
UPDATE = {
    name: f"""mutation($input: Update{name}Input!) {{
  update{name}(input: $input) {{ id updatedAt }}
}}"""
    for name in ("User", "Account", "Contact", "Lead", "Opportunity")
}
DELETE = {
    name: f"mutation($id: ID!) {{ delete{name}(id: $id) {{ id deletedAt }} }}"
    for name in ("Account", "Contact", "Lead", "Opportunity")
}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}@example.com"


@dataclass
class Member:
    id: str
    email: str
    api: Api


@dataclass
class Org:
    """An organization: an admin, a sales manager with two sellers, and a lone seller."""

    admin: Member
    manager: Member
    seller: Member
    teammate: Member  # the manager's other seller
    outsider: Member  # a seller with no manager
    extra: dict[str, Any] = field(default_factory=dict)

    async def add_user(self, role: str = "SELLER", manager: Member | None = None) -> Member:
        email = unique_email(role.lower())
        data = await self.admin.api.data(
            CREATE_USER,
            input={
                "email": email,
                "fullName": f"{role.title()} {email[:12]}",
                "password": PASSWORD,
                "role": role,
                "managerId": manager.id if manager else None,
            },
        )
        token = (await self.admin.api.data(LOGIN, email=email, password=PASSWORD))["login"]["token"]
        return Member(data["createUser"]["id"], email, self.admin.api.as_(token))


async def new_org(http: httpx.AsyncClient) -> Org:
    api = Api(http)
    email = unique_email("admin")
    data = await api.data(
        SIGN_UP,
        input={
            "organizationName": f"Org {email}",
            "fullName": "Admin Person",
            "email": email,
            "password": PASSWORD,
        },
    )
    admin = Member(data["signUp"]["user"]["id"], email, api.as_(data["signUp"]["token"]))
    org = Org(admin=admin, manager=admin, seller=admin, teammate=admin, outsider=admin)
    org.manager = await org.add_user("SALES_MANAGER")
    org.seller = await org.add_user("SELLER", org.manager)
    org.teammate = await org.add_user("SELLER", org.manager)
    org.outsider = await org.add_user("SELLER")
    return org


async def create_account(member: Member, **overrides: Any) -> dict[str, Any]:
    values = {"name": f"Account {next(_counter)}", **overrides}
    return (await member.api.data(CREATE_ACCOUNT, input=values))["createAccount"]


SET_LIFECYCLE = """
mutation($id: ID!, $stage: LifecycleStage, $reason: String!) {
  setContactLifecycle(contactId: $id, stage: $stage, reason: $reason) { lifecycleStage }
}"""


async def create_contact(member: Member, **overrides: Any) -> dict[str, Any]:
    """A contact; with `lifecycleStage`, set (and pinned) afterwards by `member`, a manager or
    an admin, as createContact refuses a stage."""
    n = next(_counter)
    stage = overrides.pop("lifecycleStage", None)
    values = {"firstName": "Pat", "lastName": f"Contact{n}", "email": f"pat{n}@client.example"}
    data = await member.api.data(CREATE_CONTACT, input={**values, **overrides})
    contact: dict[str, Any] = data["createContact"]
    if stage is not None:
        await member.api.data(SET_LIFECYCLE, id=contact["id"], stage=stage, reason="Test data")
    return contact


async def create_opportunity(member: Member, **overrides: Any) -> dict[str, Any]:
    if "accountId" not in overrides:
        overrides["accountId"] = (await create_account(member))["id"]
    values = {
        "name": f"Deal {next(_counter)}",
        "amount": "1000.00",
        "currency": "EUR",
        "expectedCloseDate": "2027-03-31",
        **overrides,
    }
    return (await member.api.data(CREATE_OPPORTUNITY, input=values))["createOpportunity"]


async def create_lead(member: Member, **overrides: Any) -> dict[str, Any]:
    values = {"title": f"Lead {next(_counter)}", **overrides}
    return (await member.api.data(CREATE_LEAD, input=values))["createLead"]


def pk(global_id: str) -> int:
    """The database id inside a global id."""
    return int(base64.b64decode(global_id).decode().split(":")[1])


def global_id(type_name: str, pk: int | str) -> str:
    """A well-formed global id, as the API writes them (base64 of "Type:pk")."""
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


async def live_subscriptions(http: httpx.AsyncClient) -> int:
    """How many live subscriptions the serving process holds (its /metrics gauge)."""
    metrics = (await http.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith("crm_live_subscriptions "):
            return int(float(line.split()[1]))
    raise AssertionError("no crm_live_subscriptions gauge in /metrics")


async def wait_for_subscriptions(http: httpx.AsyncClient, count: int, seconds: float = 5.0) -> int:
    """Wait until the server holds at least `count` live subscriptions (so that a change made
    next is dispatched to them live, not replayed), and return how many it holds."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (held := await live_subscriptions(http)) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{held} live subscriptions after {seconds}s, expected {count}")
        await asyncio.sleep(0.02)
    return held
