"""Signing in with an OpenID Connect provider, end to end: our app in process, the provider over
real HTTP. Every refused sign-in leaves no account, no login code and no session behind."""

import logging
from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import utcnow
from app.core.oidc_provider import OidcProvider
from app.oidc.models import OidcLoginCode
from app.users.models import User, UserSession
from tests.helpers import assert_problem
from tests.oidc.flow import (
    FRONTEND,
    PROVIDER,
    assert_nothing_stored,
    at_provider,
    count,
    exchange,
    frontend_query,
    login_error,
    sign_in,
    start,
    to_callback,
)
from tests.oidc.provider import FakeProvider
from tests.users.factories import UserFactory

pytestmark = pytest.mark.anyio

NEW_EMAIL = "new.person@example.com"


async def test_a_new_user_signs_in_and_gets_working_tokens(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    started = await start(browser)
    assert started.headers["cache-control"] == "no-store"
    cookie = SimpleCookie(started.headers["set-cookie"])["oidc_login"]
    assert cookie["httponly"]
    assert cookie["secure"]
    assert cookie["samesite"] == "lax"
    assert cookie["path"] == f"/api/v1/login/oidc/{PROVIDER}/callback"
    assert 0 < int(cookie["max-age"]) <= 600

    callback = await browser.get(await at_provider(started.headers["location"]))

    # The authorization request carried state, nonce and an S256 PKCE challenge, and the token
    # request its verifier (the provider checked it against the challenge).
    (authorization,) = provider.authorize_requests
    assert authorization["code_challenge_method"] == "S256"
    assert authorization["state"]
    assert authorization["nonce"]
    assert authorization["scope"].split() == ["openid", "email", "profile"]
    assert authorization["redirect_uri"] == (f"https://test/api/v1/login/oidc/{PROVIDER}/callback")
    (token_request,) = provider.token_requests
    assert token_request["code_verifier"]

    # The browser lands on the frontend with a one-time code, no token, and forgets the state.
    query = frontend_query(callback, "/login/oidc")
    assert set(query) == {"code"}
    assert callback.headers["cache-control"] == "no-store"
    assert browser.cookies.get("oidc_login") is None
    assert await count(session, UserSession) == 0

    tokens = await exchange(browser, query["code"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"

    me = await browser.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == NEW_EMAIL
    assert me.json()["full_name"] == "New Person"
    assert me.json()["is_active"] is True
    assert me.json()["is_superuser"] is False

    refreshed = await browser.post("/login/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert await count(session, User, User.email == NEW_EMAIL) == 1
    assert await count(session, UserSession) == 1


async def test_a_verified_email_signs_in_to_the_existing_account(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    user = await UserFactory.persist(session, email="existing@example.com")
    password_hash = user.hashed_password
    provider.behaviour.email = "Existing@EXAMPLE.com"

    code = frontend_query(await sign_in(browser), "/login/oidc")["code"]
    tokens = (await exchange(browser, code)).json()
    me = await browser.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    assert me.json()["id"] == str(user.id)
    assert await count(session, User, User.email == "existing@example.com") == 1
    await session.refresh(user)
    assert user.hashed_password == password_hash  # password logins keep working


async def test_a_state_that_is_not_the_cookies_is_refused(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    callback = urlsplit(await to_callback(browser))
    query = {key: values[0] for key, values in parse_qs(callback.query).items()}
    forged = f"{callback.scheme}://{callback.netloc}{callback.path}?code={query['code']}&state=x"

    assert login_error(await browser.get(forged)) == "invalid_state"
    await assert_nothing_stored(session, NEW_EMAIL)
    # Refused before the code was spent: the provider never saw a token request.
    assert provider.token_requests == []


async def test_a_callback_without_the_state_cookie_is_refused(
    browser: httpx2.AsyncClient,
    client: httpx2.AsyncClient,
    provider: FakeProvider,
    session: AsyncSession,
) -> None:
    # Login CSRF: an attacker's own code and state, in the victim's browser (no cookie).
    callback = await to_callback(browser)

    assert login_error(await client.get(callback)) == "invalid_state"
    await assert_nothing_stored(session, NEW_EMAIL)


async def test_a_replayed_authorization_code_is_refused_by_the_provider(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    started = await start(browser)
    sealed = browser.cookies["oidc_login"]
    callback = await at_provider(started.headers["location"])
    frontend_query(await browser.get(callback), "/login/oidc")
    assert await count(session, OidcLoginCode) == 1

    # Someone who saw the callback URL and the cookie tries them again.
    replayed = await browser.get(callback, headers={"Cookie": f"oidc_login={sealed}"})

    assert login_error(replayed) == "code_rejected"
    assert await count(session, User, User.email == NEW_EMAIL) == 1  # the first sign-in's
    assert await count(session, OidcLoginCode) == 1
    assert await count(session, UserSession) == 0


async def test_a_one_time_code_works_once(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    code = frontend_query(await sign_in(browser), "/login/oidc")["code"]
    assert (await exchange(browser, code)).status_code == 200

    replayed = await exchange(browser, code)

    assert_problem(replayed, 400, type_="urn:problem:invalid-login-code")
    assert await count(session, UserSession) == 1


async def test_an_expired_one_time_code_is_refused(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    code = frontend_query(await sign_in(browser), "/login/oidc")["code"]
    await session.execute(update(OidcLoginCode).values(expires_at=utcnow() - timedelta(seconds=1)))

    assert_problem(await exchange(browser, code), 400, type_="urn:problem:invalid-login-code")
    assert await count(session, UserSession) == 0


@pytest.mark.parametrize("code", ["unknown", "x" * 200])
async def test_an_unknown_one_time_code_is_refused(
    client: httpx2.AsyncClient, session: AsyncSession, code: str
) -> None:
    assert_problem(await exchange(client, code), 400, type_="urn:problem:invalid-login-code")
    assert await count(session, UserSession) == 0


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "x" * 201}, {"code": "a", "b": 1}])
async def test_a_malformed_exchange_is_422(
    client: httpx2.AsyncClient, body: dict[str, Any]
) -> None:
    assert_problem(await client.post("/login/oidc/token", json=body), 422)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        pytest.param({"rogue_key": True}, "invalid_id_token", id="signed with a key not in JWKS"),
        pytest.param({"audience": "someone-else"}, "invalid_id_token", id="another audience"),
        pytest.param({"expires_in": -600}, "invalid_id_token", id="expired"),
        pytest.param({"nonce": "another-nonce"}, "invalid_id_token", id="another nonce"),
        pytest.param({"email_verified": False}, "email_not_verified", id="unverified email"),
        pytest.param({"email_verified": None}, "email_not_verified", id="email_verified absent"),
        pytest.param({"email_verified": "true"}, "email_not_verified", id="email_verified text"),
        pytest.param({"email": None}, "email_missing", id="no email"),
        pytest.param({"email": "not-an-address"}, "email_missing", id="unusable email"),
    ],
)
async def test_an_id_token_we_cannot_trust_is_refused(
    browser: httpx2.AsyncClient,
    provider: FakeProvider,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    behaviour: dict[str, Any],
    reason: str,
) -> None:
    for name, value in behaviour.items():
        setattr(provider.behaviour, name, value)
    caplog.set_level(logging.INFO, logger="app.oidc.service")

    assert login_error(await sign_in(browser)) == reason
    await assert_nothing_stored(session, NEW_EMAIL)
    (failed,) = oidc_events(caplog, "auth.oidc_login_failed")
    assert failed["provider"] == PROVIDER
    assert failed["reason"] == reason


async def test_an_inactive_user_is_refused(
    browser: httpx2.AsyncClient,
    provider: FakeProvider,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = await UserFactory.persist(session, email=NEW_EMAIL, is_active=False)
    caplog.set_level(logging.INFO, logger="app.oidc.service")

    assert login_error(await sign_in(browser)) == "inactive_user"
    assert await count(session, OidcLoginCode) == 0
    assert await count(session, UserSession) == 0
    (failed,) = oidc_events(caplog, "auth.oidc_login_failed")
    assert failed["user_id"] == str(user.id)


async def test_a_user_deactivated_before_the_exchange_gets_no_session(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    code = frontend_query(await sign_in(browser), "/login/oidc")["code"]
    await session.execute(update(User).values(is_active=False))

    assert_problem(await exchange(browser, code), 400, type_="urn:problem:invalid-login-code")
    assert await count(session, UserSession) == 0


async def test_no_account_is_opened_when_registration_is_closed(
    browser: httpx2.AsyncClient,
    provider: FakeProvider,
    session: AsyncSession,
    app: Any,
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"USERS_OPEN_REGISTRATION": False})

    assert login_error(await sign_in(browser)) == "signup_closed"
    await assert_nothing_stored(session, NEW_EMAIL)


async def test_the_user_declining_at_the_provider_is_reported(
    browser: httpx2.AsyncClient, provider: FakeProvider, session: AsyncSession
) -> None:
    await start(browser)
    declined = await browser.get(f"/login/oidc/{PROVIDER}/callback?error=access_denied&state=x")

    assert login_error(declined) == "access_denied"
    await assert_nothing_stored(session, NEW_EMAIL)


async def test_an_unreachable_provider_sends_the_browser_back_with_an_error(
    browser: httpx2.AsyncClient,
    override_settings: Callable[..., Settings],
    free_tcp_port: int,
    session: AsyncSession,
) -> None:
    override_settings(
        FRONTEND_HOST=FRONTEND,
        OIDC_PROVIDERS=[
            OidcProvider(
                name="down",
                issuer=f"http://127.0.0.1:{free_tcp_port}",
                client_id="client",
                client_secret="secret",
            )
        ],
    )

    started = await browser.get("/login/oidc/down")

    assert login_error(started) == "provider_unavailable"
    assert "set-cookie" not in started.headers


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"issuer": "https://another.example.com"}, id="metadata of another issuer"),
        pytest.param({"jwks_uri": None}, id="no jwks_uri"),
        pytest.param({"authorization_endpoint": None}, id="no authorization_endpoint"),
    ],
)
async def test_metadata_that_cannot_be_right_stops_the_sign_in_before_the_provider(
    browser: httpx2.AsyncClient, provider: FakeProvider, changes: dict[str, Any]
) -> None:
    provider.metadata_changes.update(changes)

    started = await browser.get(f"/login/oidc/{PROVIDER}")

    assert login_error(started) == "provider_unavailable"
    assert "set-cookie" not in started.headers


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"token_endpoint": "/missing"}, id="token endpoint answers 404, not JSON"),
        pytest.param({"jwks_uri": "/missing"}, id="keys cannot be read"),
    ],
)
async def test_a_provider_failing_after_the_redirect_is_no_500(
    browser: httpx2.AsyncClient,
    provider: FakeProvider,
    session: AsyncSession,
    changes: dict[str, Any],
) -> None:
    provider.metadata_changes.update(
        {name: f"{provider.issuer}{path}" for name, path in changes.items()}
    )

    assert login_error(await sign_in(browser)) == "provider_unavailable"
    await assert_nothing_stored(session, NEW_EMAIL)


@pytest.mark.parametrize("path", ["/login/oidc/nope", "/login/oidc/nope/callback?code=a&state=b"])
async def test_an_unknown_provider_is_404(
    browser: httpx2.AsyncClient, provider: FakeProvider, path: str
) -> None:
    assert_problem(await browser.get(path), 404, type_="urn:problem:unknown-oidc-provider")


async def test_without_providers_every_name_is_404(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get(f"/login/oidc/{PROVIDER}"), 404)


async def test_no_code_or_token_is_logged(
    browser: httpx2.AsyncClient, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = frontend_query(await sign_in(browser), "/login/oidc")["code"]
    tokens = (await exchange(browser, code)).json()

    (succeeded,) = oidc_events(caplog, "auth.oidc_login_succeeded")
    assert succeeded["provider"] == PROVIDER
    assert succeeded["new_user"] is True
    logged = "\n".join(str(record.msg) for record in caplog.records)
    for secret in (code, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in logged


def oidc_events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == event
    ]
