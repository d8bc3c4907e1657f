"""What a request asks of PostgreSQL, counted on the wire by the proxy between them: a read pays
for its statements and nothing else; writes are one transaction, committed at the end.

See `app.core.db_errors` (the module doc) for why the reads before the first write need no
transaction, and when a pooled connection is pinged.
"""

import uuid

import httpx2
import pytest
from sqlalchemy.engine import URL

from app.core import db_errors
from app.core.config import Settings
from tests.core import outage
from tests.core.faultproxy import FaultProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_settings(settings: Settings, outage_url: URL, proxy: FaultProxy) -> Settings:
    return outage.app_settings(settings, outage_url, proxy)


def _statements(queries: list[str]) -> list[str]:
    return [query.strip().rstrip(";").upper() for query in queries]


async def _counted(proxy: FaultProxy, request: object) -> tuple[httpx2.Response, int, list[str]]:
    proxy.round_trips, proxy.simple_queries = 0, []
    response = await request  # type: ignore[misc]
    return response, proxy.round_trips, _statements(proxy.simple_queries)


async def test_an_authenticated_read_makes_one_round_trip_per_statement(
    app_settings: Settings, proxy: FaultProxy
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        created = await client.post("/items/", headers=headers, json={"title": "counted"})
        assert created.status_code == 201, created.text
        item = f"/items/{created.json()['id']}"
        # Warm: the statements are prepared on the (one) pooled connection.
        for path in (item, "/users/me", item, "/users/me"):
            assert (await client.get(path, headers=headers)).status_code == 200

        # The user with their session, then the item: two statements, no BEGIN, COMMIT or ping.
        response, trips, simple = await _counted(proxy, client.get(item, headers=headers))
        assert response.status_code == 200
        assert response.json()["title"] == "counted"
        assert (trips, simple) == (2, [])

        response, trips, simple = await _counted(proxy, client.get("/users/me", headers=headers))
        assert response.status_code == 200
        assert (trips, simple) == (1, [])


async def test_writes_are_one_transaction_that_begins_at_the_first_write(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        title = f"tx-{uuid.uuid4().hex}"
        response, _, simple = await _counted(
            proxy, client.post("/items/", headers=headers, json={"title": title})
        )
        assert response.status_code == 201, response.text
        # The reads before it (who is calling) ran outside; the insert and its commit in one.
        assert simple[0].startswith("BEGIN")
        assert simple[-1] == "COMMIT"
        assert simple.count("COMMIT") == 1

        item = response.json()["id"]
        response, _, simple = await _counted(
            proxy, client.patch(f"/items/{item}", headers=headers, json={"title": "renamed"})
        )
        assert response.status_code == 200, response.text
        assert simple[0].startswith("BEGIN")
        assert simple[-1] == "COMMIT"

    admin = await outage.admin_connect(outage_url)
    try:
        stored = await admin.fetchrow("SELECT title, version FROM items WHERE id = $1", item)
    finally:
        await admin.close()
    assert (stored["title"], stored["version"]) == ("renamed", 2)


async def test_a_connection_idle_for_a_while_is_pinged_before_use(
    app_settings: Settings, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        assert (await client.get("/users/me", headers=headers)).status_code == 200
        monkeypatch.setattr(db_errors, "PING_AFTER_IDLE_SECONDS", 0.0)
        response, trips, simple = await _counted(proxy, client.get("/users/me", headers=headers))
        assert response.status_code == 200
        assert (trips, simple) == (2, ["BEGIN; ROLLBACK"])


@pytest.mark.parametrize(
    ("statement", "outside"),
    [
        ("SELECT users.id FROM users WHERE users.id = $1", True),
        ("  select 1", True),
        ("SELECT emails.id FROM emails LIMIT 1 FOR UPDATE SKIP LOCKED", False),
        ("SELECT * FROM items FOR NO KEY UPDATE", False),
        ("SELECT * FROM items FOR share", False),
        ("INSERT INTO items (id) VALUES ($1)", False),
        ("UPDATE items SET title = $1", False),
        ("WITH moved AS (DELETE FROM items RETURNING id) SELECT * FROM moved", False),
    ],
)
def test_only_plain_selects_run_before_the_transaction(statement: str, outside: bool) -> None:
    assert db_errors._reads_only(statement) is outside
