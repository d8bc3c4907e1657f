"""The OWASP API Security Top 10 (2023), route by route where it applies.

Routes are enumerated from the app itself, so a new route is covered by the authentication and
authorization sweeps the day it is added. Every refused request is also checked to have changed
nothing in the database (`snapshot`).
"""

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import features
from app.auth.models import RefreshToken
from app.core.config import API_V1_PREFIX, Settings
from app.emails.models import OutboxEmail
from app.items.models import Item
from app.users.models import User, UserSession
from tests.helpers import assert_problem, assert_unauthorized, change_password, login
from tests.items.factories import ItemFactory
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio

PUBLIC = {
    ("POST", "/login/access-token"),
    ("POST", "/login/refresh"),
    ("GET", "/login/oidc/{provider}"),
    ("GET", "/login/oidc/{provider}/callback"),
    ("POST", "/login/oidc/token"),
    ("POST", "/password-recovery/{email}"),
    ("POST", "/reset-password/"),
    ("POST", "/users/signup"),
    ("GET", "/utils/health-check/"),
    ("GET", "/utils/live/"),
    ("GET", "/utils/ready/"),
}
SUPERUSER_ONLY = {
    ("GET", "/users/"),
    ("POST", "/users/"),
    ("PATCH", "/users/{user_id}"),
    ("DELETE", "/users/{user_id}"),
    ("POST", "/password-recovery-html-content/{email}"),
    ("POST", "/utils/test-email/"),
}


def routes(_app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path under /api/v1) of every route every feature mounts."""
    for router, _public in features.routers():
        for route in router.routes:
            assert isinstance(route, APIRoute)
            for method in sorted(set(route.methods or ()) - {"HEAD"}):
                yield method, route.path_format


def concrete(path: str, *, item: Item | None = None, user: User | None = None) -> str:
    """The route's path with real ids (someone's item, some user) in its parameters."""
    return (
        path.replace("{id}", str(item.id if item else uuid.uuid4()))
        .replace("{user_id}", str(user.id if user else uuid.uuid4()))
        .replace("{email}", user.email if user else "nobody@example.com")
        .replace("{provider}", "nope")
    )


async def snapshot(session: AsyncSession) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    users = await session.execute(
        select(User.id, User.email, User.hashed_password, User.is_active, User.is_superuser)
        .order_by(User.id)
        .execution_options(populate_existing=True)
    )
    items = await session.execute(
        select(Item.id, Item.title, Item.description, Item.owner_id).order_by(Item.id)
    )
    counts = {}
    for model in (UserSession, RefreshToken, OutboxEmail):
        counts[model.__tablename__] = len((await session.scalars(select(model.id))).all())
    ended = await session.scalars(select(UserSession.id).where(UserSession.ended_at.is_not(None)))
    return {
        "users": users.all(),
        "items": items.all(),
        "counts": counts,
        "ended": sorted(ended.all()),
    }


async def test_the_route_lists_of_this_module_are_complete(app: FastAPI) -> None:
    # A new route must be placed: public, superuser-only, or (the default) any signed-in user.
    every = set(routes(app))
    assert every >= PUBLIC
    assert every >= SUPERUSER_ONLY


# --- API1: broken object level authorization ----------------------------------------------


async def test_api1_nobody_reaches_someone_elses_item(
    app: FastAPI,
    client: httpx2.AsyncClient,
    session: AsyncSession,
    other_user: User,
    user_headers: dict[str, str],
) -> None:
    theirs = await ItemFactory.persist(session, owner_id=other_user.id, title="Theirs")
    before = await snapshot(session)
    for method, path in routes(app):
        if "{id}" not in path:
            continue
        response = await client.request(
            method, concrete(path, item=theirs), headers=user_headers, json={"title": "Mine now"}
        )
        # Someone else's item looks exactly like a missing one.
        assert_problem(response, 404)
    assert await snapshot(session) == before


async def test_api1_a_user_reaches_no_other_account(
    app: FastAPI,
    client: httpx2.AsyncClient,
    session: AsyncSession,
    other_user: User,
    user_headers: dict[str, str],
) -> None:
    before = await snapshot(session)
    for method, path in routes(app):
        if "{user_id}" not in path:
            continue
        response = await client.request(
            method, concrete(path, user=other_user), headers=user_headers, json={"full_name": "x"}
        )
        assert_problem(response, 403)
    assert await snapshot(session) == before


# --- API2: broken authentication ----------------------------------------------------------


async def _dead_tokens(
    client: httpx2.AsyncClient, session: AsyncSession, superuser_headers: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Bearer headers that must all be refused, each dead for a different reason."""

    async def fresh() -> tuple[User, dict[str, Any]]:
        account = await UserFactory.persist(session)
        return account, (await login(client, account.email, DEFAULT_PASSWORD)).json()

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    dead: dict[str, dict[str, str]] = {}
    _, tokens = await fresh()
    dead["refresh token as access token"] = bearer(tokens["refresh_token"])
    _, tokens = await fresh()
    assert (await client.post("/logout", headers=bearer(tokens["access_token"]))).status_code == 200
    dead["after logout"] = bearer(tokens["access_token"])
    _, tokens = await fresh()
    changed = await change_password(
        client, bearer(tokens["access_token"]), DEFAULT_PASSWORD, "another-password-1"
    )
    assert changed.status_code == 200
    dead["after a password change"] = bearer(tokens["access_token"])
    account, tokens = await fresh()
    for active in (False, True):
        toggled = await client.patch(
            f"/users/{account.id}", headers=superuser_headers, json={"is_active": active}
        )
        assert toggled.status_code == 200
    dead["after deactivation and reactivation"] = bearer(tokens["access_token"])
    dead["no token"] = {}
    dead["garbage"] = bearer("garbage")
    dead["alg none"] = bearer("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.")
    return dead


async def test_api2_every_private_route_refuses_every_dead_token(
    app: FastAPI,
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user: User,
    superuser_headers: dict[str, str],
) -> None:
    dead = await _dead_tokens(client, session, superuser_headers)
    before = await snapshot(session)
    for method, path in routes(app):
        if (method, path) in PUBLIC:
            continue
        for reason, headers in dead.items():
            response = await client.request(
                method, concrete(path, user=user), headers=headers, json={"title": "x"}
            )
            assert response.status_code == 401, (method, path, reason, response.text)
            assert_unauthorized(response)
    assert await snapshot(session) == before


# --- API3: broken object property level authorization -------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/users/signup", {"is_superuser": True}),
        ("POST", "/users/signup", {"is_active": False}),
        ("PATCH", "/users/me", {"is_superuser": True}),
        ("PATCH", "/users/me", {"hashed_password": "x"}),
        ("PATCH", "/users/me", {"id": str(uuid.uuid4())}),
        ("POST", "/items/", {"owner_id": str(uuid.uuid4())}),
        ("POST", "/items/", {"id": str(uuid.uuid4())}),
        ("POST", "/login/refresh", {"session_id": str(uuid.uuid4())}),
    ],
)
async def test_api3_properties_one_may_not_set_are_refused(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    base = {"email": "mass@example.com", "password": "a-password-1", "title": "t"}
    if path != "/users/signup":
        base = {"title": "t"} if path == "/items/" else {}
    before = await snapshot(session)
    response = await client.request(method, path, headers=user_headers, json={**base, **body})
    problem = assert_problem(response, 422)
    assert ["body", next(iter(body))] in [error["loc"] for error in problem["errors"]]
    assert await snapshot(session) == before


_SECRET_KEYS = re.compile(r'"(hashed_password|password|token_hash|cred)"')


async def test_api3_no_response_exposes_a_hash_or_anothers_token(
    app: FastAPI,
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user: User,
    superuser: User,
    superuser_headers: dict[str, str],
) -> None:
    await ItemFactory.persist(session, owner_id=user.id)
    for method, path in routes(app):
        if method != "GET":
            continue
        response = await client.get(concrete(path, user=user), headers=superuser_headers)
        assert not _SECRET_KEYS.search(response.text), (path, response.text)
        assert user.hashed_password not in response.text
        assert superuser.hashed_password not in response.text


async def test_api3_no_log_line_holds_a_password_token_or_hash(
    client: httpx2.AsyncClient,
    user: User,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
) -> None:
    wrong = await login(client, user.email, "a-wrong-password-1")
    assert wrong.status_code == 400
    tokens = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    refreshed = await client.post("/login/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    await client.post("/password-recovery/" + user.email)
    await client.post(
        "/logout", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    output = caplog.text
    secrets = [
        DEFAULT_PASSWORD,
        "a-wrong-password-1",
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed.json()["refresh_token"],
        user.hashed_password,
        settings.SECRET_KEY,
    ]
    assert "auth.login_succeeded" in output  # the events are there...
    for secret in secrets:  # ...and nothing secret is in them
        assert secret not in output


# --- API4: unrestricted resource consumption ----------------------------------------------


async def test_api4_bodies_and_pages_are_bounded(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user_headers: dict[str, str],
    settings: Settings,
) -> None:
    before = await snapshot(session)
    huge = {"title": "x", "description": "y" * settings.MAX_REQUEST_BODY_BYTES}
    assert_problem(await client.post("/items/", headers=user_headers, json=huge), 413)
    assert_problem(await client.get("/items/", headers=user_headers, params={"limit": 101}), 422)
    assert_problem(await client.get("/items/", headers=user_headers, params={"skip": 2**31}), 422)
    long_password = {"email": "long@example.com", "password": "p" * 129}
    assert_problem(await client.post("/users/signup", json=long_password), 422)
    assert await snapshot(session) == before


# --- API5: broken function level authorization --------------------------------------------


async def test_api5_superuser_functions_refuse_a_normal_user(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
) -> None:
    before = await snapshot(session)
    for method, path in sorted(SUPERUSER_ONLY):
        body = {"email": "new@example.com", "password": "a-password-1", "is_superuser": True}
        response = await client.request(
            method,
            concrete(path, user=other_user),
            headers=user_headers,
            json=body,
            params={"email_to": "x@example.com"},
        )
        assert_problem(response, 403)
    # Not even on oneself: a user cannot promote themself through the admin route.
    promote = await client.patch(
        f"/users/{user.id}", headers=user_headers, json={"is_superuser": True}
    )
    assert_problem(promote, 403)
    assert await snapshot(session) == before


# --- API6: unrestricted access to sensitive business flows --------------------------------


async def test_api6_recovery_does_not_reveal_who_is_registered(
    client: httpx2.AsyncClient, user: User
) -> None:
    known = await client.post(f"/password-recovery/{user.email}")
    unknown = await client.post("/password-recovery/unknown-person@example.com")
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())


async def test_api6_closed_registration_creates_nobody(
    client: httpx2.AsyncClient, session: AsyncSession, override_settings: Any
) -> None:
    override_settings(USERS_OPEN_REGISTRATION=False)
    before = await snapshot(session)
    response = await client.post(
        "/users/signup", json={"email": "closed@example.com", "password": "a-password-1"}
    )
    assert_problem(response, 403)
    assert await snapshot(session) == before


# --- API8: security misconfiguration ------------------------------------------------------


async def test_api8_token_answers_are_never_cached(client: httpx2.AsyncClient, user: User) -> None:
    tokens = await login(client, user.email, DEFAULT_PASSWORD)
    assert tokens.headers["cache-control"] == "no-store"
    refreshed = await client.post(
        "/login/refresh", json={"refresh_token": tokens.json()["refresh_token"]}
    )
    assert refreshed.headers["cache-control"] == "no-store"


async def test_api8_errors_show_no_internals(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post("/items/", headers=user_headers, content=b"{not json")
    body = assert_problem(response, 422)
    assert "Traceback" not in json.dumps(body)


# --- API9: improper inventory management --------------------------------------------------


async def test_api9_the_published_document_lists_exactly_the_mounted_routes(
    app: FastAPI, client: httpx2.AsyncClient
) -> None:
    document = (await client.get("/openapi.json")).json()
    published = {
        (method.upper(), path.removeprefix(API_V1_PREFIX))
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert published == set(routes(app))
