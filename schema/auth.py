"""Sign-up, login and logout."""

from __future__ import annotations

from datetime import datetime

import strawberry

from resolvers import auth
from schema.base import Info, context
from schema.user import User


@strawberry.type(description="A bearer token and who it signs in.")
class AuthPayload:
    token: str = strawberry.field(
        description="Send as `Authorization: Bearer <token>`. Shown once: it is stored hashed."
    )
    expires_at: datetime
    user: User


def _payload(session: auth.Session) -> AuthPayload:
    return AuthPayload(
        token=session.token, expires_at=session.expires_at, user=User.from_row(session.user)
    )


@strawberry.input(description="A new organization and its first admin.")
class SignUpInput:
    organization_name: str
    full_name: str
    email: str
    password: str = strawberry.field(description="At least 10 characters.")


@strawberry.type
class AuthMutations:
    @strawberry.mutation(
        description="Create an organization with its first admin, and sign the admin in."
    )
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        session = await auth.sign_up(
            context(info), input.organization_name, input.full_name, input.email, input.password
        )
        return _payload(session)

    @strawberry.mutation(description="Exchange an email and password for a token.")
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        return _payload(await auth.login(context(info), email, password))

    @strawberry.mutation(description="Revoke the token this request was made with.")
    async def logout(self, info: Info) -> bool:
        await auth.logout(context(info))
        return True
