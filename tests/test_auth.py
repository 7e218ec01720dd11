"""Sign-up, login, logout and tokens."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from models import AuthToken, User
from tests.helpers import LOGIN, PASSWORD, SIGN_UP, Api, unique_email

VIEWER = "{ viewer { id email role } }"
LOGOUT = "mutation { logout }"


def sign_up_input(email: str, **overrides: str) -> dict[str, str]:
    return {
        "organizationName": "Acme",
        "fullName": "Ada Admin",
        "email": email,
        "password": PASSWORD,
        **overrides,
    }


async def test_sign_up_creates_an_organization_with_its_admin_and_default_stages(api: Api):
    email = unique_email()
    signed = (await api.data(SIGN_UP, input=sign_up_input(email)))["signUp"]
    admin = api.as_(signed["token"])
    data = await admin.data("{ viewer { email role } organization { name stages { name } } }")
    assert data["viewer"] == {"email": email, "role": "ADMIN"}
    assert data["organization"]["name"] == "Acme"
    assert [stage["name"] for stage in data["organization"]["stages"]][:1] == ["Qualification"]
    assert len(data["organization"]["stages"]) == 6


async def test_passwords_and_tokens_are_stored_hashed(api: Api):
    email = unique_email()
    token = (await api.data(SIGN_UP, input=sign_up_input(email)))["signUp"]["token"]
    user = await User.get(email=email)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    stored = await AuthToken.filter(user_id=user.id).values_list("token_hash", flat=True)
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


async def test_duplicate_email_is_a_conflict(api: Api):
    email = unique_email()
    await api.data(SIGN_UP, input=sign_up_input(email))
    error = await api.error(SIGN_UP, input=sign_up_input(email.upper(), organizationName="Other"))
    assert error["extensions"] == {"code": "CONFLICT", "field": "email"}


async def test_login_is_case_insensitive_and_refuses_wrong_passwords(api: Api):
    email = unique_email()
    await api.data(SIGN_UP, input=sign_up_input(email))
    token = (await api.data(LOGIN, email=email.upper(), password=PASSWORD))["login"]["token"]
    assert (await api.as_(token).data(VIEWER))["viewer"]["email"] == email

    wrong = await api.error(LOGIN, email=email, password="not the password")
    unknown = await api.error(LOGIN, email=unique_email(), password=PASSWORD)
    # The same answer whether the email exists or not.
    assert wrong["extensions"]["code"] == unknown["extensions"]["code"] == "UNAUTHENTICATED"
    assert wrong["message"] == unknown["message"]


async def test_logout_revokes_only_that_token(api: Api):
    email = unique_email()
    first = (await api.data(SIGN_UP, input=sign_up_input(email)))["signUp"]["token"]
    second = (await api.data(LOGIN, email=email, password=PASSWORD))["login"]["token"]
    assert (await api.as_(first).data(LOGOUT))["logout"] is True
    assert await api.as_(first).error_code(VIEWER) == "UNAUTHENTICATED"
    assert (await api.as_(second).data(VIEWER))["viewer"]["email"] == email


async def test_expired_tokens_stop_working(api: Api):
    email = unique_email()
    token = (await api.data(SIGN_UP, input=sign_up_input(email)))["signUp"]["token"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    await AuthToken.filter(token_hash=digest).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    error = await api.as_(token).error(VIEWER)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in error["message"]


async def test_missing_and_malformed_credentials(api: Api, http):
    assert await api.error_code(VIEWER) == "UNAUTHENTICATED"
    assert await api.as_("not-a-token").error_code(VIEWER) == "UNAUTHENTICATED"
    response = await http.post(
        "/graphql", json={"query": VIEWER}, headers={"authorization": "Basic abc"}
    )
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Bearer" in error["message"]


async def test_weak_sign_up_input_is_refused_and_creates_nothing(api: Api):
    email = unique_email()
    cases = [
        (sign_up_input(email, password="short"), "password"),
        (sign_up_input("not-an-email"), "email"),
        (sign_up_input(email, organizationName="   "), "organizationName"),
        (sign_up_input(email, fullName=""), "fullName"),
    ]
    for values, field in cases:
        error = await api.error(SIGN_UP, input=values)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert not await User.filter(email=email).exists()
