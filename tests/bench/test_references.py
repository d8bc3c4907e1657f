"""The same-work ceiling (bench/ceiling.py) does our work: for the same user, session and item it
answers our JSON, and it refuses what we refuse. Otherwise the ratio `make bench` prints against
it would compare our app with a cheaper job.

It needs PostgreSQL (raw asyncpg): the suite's own, or TEST_POSTGRES_URL on a SQLite run, in a
database of its own (`<suite's>_bench`, committed to for real); skipped when there is none.
"""

import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import URL

from app.core.config import Settings
from app.core.security import create_access_token
from bench import ceiling
from tests.core import outage

pytestmark = pytest.mark.anyio

PASSWORD = "bench-test-password"
# The credential tag changes with the stored hash; these change it and put it back.
SPOIL_HASH = "UPDATE users SET hashed_password = 'x' || hashed_password WHERE id = $1"
RESTORE_HASH = "UPDATE users SET hashed_password = substr(hashed_password, 2) WHERE id = $1"
SET_ACTIVE = "UPDATE users SET is_active = $2 WHERE id = $1"


@pytest.fixture(scope="module")
async def bench_url() -> URL:
    return await outage.prepare_database("bench")


@pytest.fixture
async def clients(
    settings: Settings, bench_url: URL
) -> AsyncIterator[tuple[httpx2.AsyncClient, httpx2.AsyncClient]]:
    """A client of our app and one of the ceiling, on the same database and secret."""
    url = bench_url.render_as_string(hide_password=False)
    shared = settings.model_copy(update={"DATABASE_URL": url, "DB_POOL_SIZE": 2})
    reference = ceiling.create_app(shared)
    async with AsyncExitStack() as stack:
        ours = await stack.enter_async_context(outage.serving(shared))
        await stack.enter_async_context(reference.router.lifespan_context(reference))
        transport = httpx2.ASGITransport(app=reference)
        theirs = httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1")
        yield ours[1], await stack.enter_async_context(theirs)


async def sign_up(client: httpx2.AsyncClient) -> tuple[str, dict[str, str]]:
    """A new account: its email and bearer header."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post("/users/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = await client.post(
        "/login/access-token", data={"username": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return email, {"Authorization": f"Bearer {response.json()['access_token']}"}


async def both(
    clients: tuple[httpx2.AsyncClient, httpx2.AsyncClient], path: str, headers: dict[str, str]
) -> tuple[httpx2.Response, httpx2.Response]:
    ours, theirs = clients
    return await ours.get(path, headers=headers), await theirs.get(path, headers=headers)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a token, unverified (to sign the same ones with another key)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def execute(url: URL, query: str, *args: Any) -> None:
    admin = await outage.admin_connect(url)
    try:
        await admin.execute(query, *args)
    finally:
        await admin.close()


async def test_the_ceiling_answers_our_json(
    clients: tuple[httpx2.AsyncClient, httpx2.AsyncClient],
) -> None:
    ours, _ = clients
    _, headers = await sign_up(ours)
    for title in ("first", "second"):
        body = {"title": title, "description": "made by the test"}
        assert (await ours.post("/items/", json=body, headers=headers)).status_code == 201
    item_id = (await ours.get("/items/", headers=headers)).json()["data"][0]["id"]

    for path in ("/users/me", f"/items/{item_id}", "/items/?limit=20", "/items/?limit=1&skip=1"):
        mine, theirs = await both(clients, path, headers)
        assert mine.status_code == theirs.status_code == 200, (path, mine.text, theirs.text)
        assert theirs.json() == mine.json(), path
    mine, theirs = await both(clients, f"/items/{item_id}", headers)
    assert theirs.headers["etag"] == mine.headers["etag"]

    created = await clients[1].post("/items/", json={"title": "by the ceiling"}, headers=headers)
    assert created.status_code == 201
    mine, _ = await both(clients, f"/items/{created.json()['id']}", headers)
    assert mine.json() == created.json()


async def test_the_ceiling_refuses_what_we_refuse(
    clients: tuple[httpx2.AsyncClient, httpx2.AsyncClient], settings: Settings, bench_url: URL
) -> None:
    ours, _ = clients
    _, headers = await sign_up(ours)
    _, stranger = await sign_up(ours)
    item = await ours.post("/items/", json={"title": "mine"}, headers=headers)
    path = f"/items/{item.json()['id']}"

    # Someone else's item: missing, for both.
    assert [r.status_code for r in await both(clients, path, stranger)] == [404, 404]

    # A bad signature: the same claims signed with another key.
    me = (await ours.get("/users/me", headers=headers)).json()
    token = headers["Authorization"].removeprefix("Bearer ")
    forged = settings.model_copy(update={"SECRET_KEY": "another-secret-key-of-at-least-32-bytes"})
    claims = unverified_claims(token)
    other = create_access_token(
        me["id"], forged, credential=claims["cred"], session_id=claims["sid"]
    ).token
    bad = {"Authorization": f"Bearer {other}"}
    assert [r.status_code for r in await both(clients, path, bad)] == [401, 401]
    assert [r.status_code for r in await both(clients, path, {})] == [401, 401]

    # A changed password (the credential tag), with the session still open.
    user_id = uuid.UUID(me["id"])
    await execute(bench_url, SPOIL_HASH, user_id)
    assert [r.status_code for r in await both(clients, path, headers)] == [401, 401]
    await execute(bench_url, RESTORE_HASH, user_id)
    assert [r.status_code for r in await both(clients, path, headers)] == [200, 200]

    # An inactive user.
    await execute(bench_url, SET_ACTIVE, user_id, False)
    assert [r.status_code for r in await both(clients, path, headers)] == [403, 403]
    await execute(bench_url, SET_ACTIVE, user_id, True)

    # A session that ended (logged out).
    assert (await ours.post("/logout", headers=headers)).status_code == 200
    assert [r.status_code for r in await both(clients, path, headers)] == [401, 401]
    assert [r.status_code for r in await both(clients, "/users/me", headers)] == [401, 401]
