"""ETags, If-Match and If-None-Match on items (RFC 9110, section 13): no lost updates."""

import uuid

import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem
from tests.items.factories import ItemFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def item(session: AsyncSession, user: User) -> Item:
    return await ItemFactory.persist(session, owner_id=user.id, title="Mine", description="desc")


async def stored(session: AsyncSession, item_id: uuid.UUID) -> Item | None:
    return await session.scalar(
        select(Item).where(Item.id == item_id).execution_options(populate_existing=True)
    )


def assert_stale(response: httpx2.Response, current: str) -> None:
    """A 412 problem that names the current ETag, so the client can read it again."""
    body = assert_problem(response, 412, type_="urn:problem:precondition-failed")
    assert response.headers["etag"] == current
    assert "changed since you read it" in body["detail"]


# --- ETags --------------------------------------------------------------------------------


async def test_every_answer_with_an_item_carries_its_current_strong_etag(
    client: httpx2.AsyncClient, user_headers: dict[str, str], session: AsyncSession
) -> None:
    created = await client.post("/items/", headers=user_headers, json={"title": "One"})
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'  # quoted, no W/: a strong tag
    url = f"/items/{created.json()['id']}"

    read = await client.get(url, headers=user_headers)
    assert read.headers["etag"] == '"1"'

    patched = await client.patch(url, headers=user_headers, json={"title": "Two"})
    assert patched.headers["etag"] == '"2"'
    put = await client.put(url, headers=user_headers, json={"title": "Three"})
    assert put.headers["etag"] == '"3"'
    assert (await client.get(url, headers=user_headers)).headers["etag"] == '"3"'
    saved = await stored(session, uuid.UUID(created.json()["id"]))
    assert saved is not None
    assert (saved.title, saved.version) == ("Three", 3)


async def test_a_write_that_changes_nothing_keeps_the_etag(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str]
) -> None:
    response = await client.patch(f"/items/{item.id}", headers=user_headers, json={"title": "Mine"})
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'


# --- If-None-Match ------------------------------------------------------------------------


@pytest.mark.parametrize("if_none_match", ['"1"', 'W/"1"', '"7", "1"', "*"])
async def test_if_none_match_with_the_current_etag_is_a_304_without_a_body(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], if_none_match: str
) -> None:
    response = await client.get(
        f"/items/{item.id}", headers={**user_headers, "If-None-Match": if_none_match}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize("if_none_match", ['"2"', '"0"', "1", "garbage"])
async def test_if_none_match_with_another_etag_reads_the_item(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], if_none_match: str
) -> None:
    response = await client.get(
        f"/items/{item.id}", headers={**user_headers, "If-None-Match": if_none_match}
    )
    assert response.status_code == 200
    assert response.json()["title"] == "Mine"
    assert response.headers["etag"] == '"1"'


async def test_if_none_match_on_someone_else_s_item_is_still_a_404(
    client: httpx2.AsyncClient, item: Item, other_headers: dict[str, str]
) -> None:
    response = await client.get(
        f"/items/{item.id}", headers={**other_headers, "If-None-Match": "*"}
    )
    assert_problem(response, 404, type_="urn:problem:item-not-found")


# --- If-Match -----------------------------------------------------------------------------


@pytest.mark.parametrize("if_match", ['"1"', "*", '"5", "1"', ' "1" '])
@pytest.mark.parametrize(
    ("method", "payload"), [("PATCH", {"title": "New"}), ("PUT", {"title": "New"})]
)
async def test_if_match_with_the_current_etag_writes(
    client: httpx2.AsyncClient,
    item: Item,
    user_headers: dict[str, str],
    session: AsyncSession,
    if_match: str,
    method: str,
    payload: dict[str, str],
) -> None:
    response = await client.request(
        method, f"/items/{item.id}", headers={**user_headers, "If-Match": if_match}, json=payload
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    saved = await stored(session, item.id)
    assert saved is not None
    assert (saved.title, saved.version) == ("New", 2)


# A weak tag never matches (strong comparison); nor does an unquoted or a garbled one.
@pytest.mark.parametrize("if_match", ['"2"', 'W/"1"', "1", '"0", "2"', "garbage", '""'])
@pytest.mark.parametrize(
    ("method", "payload"),
    [("PATCH", {"title": "New"}), ("PUT", {"title": "New"}), ("DELETE", None)],
)
async def test_if_match_with_another_etag_is_a_412_and_changes_nothing(
    client: httpx2.AsyncClient,
    item: Item,
    user_headers: dict[str, str],
    session: AsyncSession,
    if_match: str,
    method: str,
    payload: dict[str, str] | None,
) -> None:
    response = await client.request(
        method, f"/items/{item.id}", headers={**user_headers, "If-Match": if_match}, json=payload
    )
    assert_stale(response, '"1"')
    saved = await stored(session, item.id)
    assert saved is not None
    assert (saved.title, saved.version) == ("Mine", 1)


async def test_a_client_that_read_an_old_version_cannot_overwrite_a_newer_one(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    url = f"/items/{item.id}"
    alice_read = await client.get(url, headers=user_headers)
    bob = await client.patch(
        url,
        headers={**user_headers, "If-Match": alice_read.headers["etag"]},
        json={"title": "Bob's"},
    )
    assert bob.status_code == 200

    alice = await client.patch(
        url,
        headers={**user_headers, "If-Match": alice_read.headers["etag"]},
        json={"title": "Alice's"},
    )

    assert_stale(alice, bob.headers["etag"])
    # She reads again, and writes on what she saw.
    fresh = await client.get(url, headers=user_headers)
    assert fresh.json()["title"] == "Bob's"
    retried = await client.patch(
        url, headers={**user_headers, "If-Match": fresh.headers["etag"]}, json={"title": "Both"}
    )
    assert retried.status_code == 200
    saved = await stored(session, item.id)
    assert saved is not None
    assert (saved.title, saved.version) == ("Both", 3)


async def test_without_if_match_the_last_write_wins(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    url = f"/items/{item.id}"
    await client.patch(url, headers=user_headers, json={"title": "Bob's"})
    # Alice read version 1 before Bob wrote, but says nothing about it.
    alice = await client.patch(url, headers=user_headers, json={"title": "Alice's"})
    assert alice.status_code == 200
    assert alice.headers["etag"] == '"3"'
    saved = await stored(session, item.id)
    assert saved is not None
    assert saved.title == "Alice's"


async def test_delete_with_the_current_etag_deletes(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.delete(f"/items/{item.id}", headers={**user_headers, "If-Match": '"1"'})
    assert response.status_code == 200
    assert await stored(session, item.id) is None


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_if_match_on_a_missing_item_is_a_404(
    client: httpx2.AsyncClient, user_headers: dict[str, str], method: str
) -> None:
    # Preconditions apply only where the request would otherwise succeed (RFC 9110, 13.2.1).
    response = await client.request(
        method,
        f"/items/{uuid.uuid4()}",
        headers={**user_headers, "If-Match": "*"},
        json={"title": "x"} if method == "PATCH" else None,
    )
    assert_problem(response, 404, type_="urn:problem:item-not-found")


async def test_the_headers_are_in_the_openapi_document(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    item = paths["/api/v1/items/{id}"]
    for method in ("put", "patch", "delete"):
        parameters = {p["name"]: p for p in item[method]["parameters"]}
        assert parameters["If-Match"]["in"] == "header"
        assert not parameters["If-Match"].get("required", False)
        assert "ETag" in item[method]["responses"]["412"]["headers"]
        assert "application/problem+json" in item[method]["responses"]["412"]["content"]
    assert {p["name"] for p in item["get"]["parameters"]} >= {"If-None-Match"}
    assert "ETag" in item["get"]["responses"]["304"]["headers"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert "ETag" in item["patch"]["responses"]["200"]["headers"]


async def test_a_browser_client_of_another_origin_can_read_the_etag(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str]
) -> None:
    # The test settings allow the template's frontend origin (tests/conftest.py).
    response = await client.get(
        f"/items/{item.id}", headers={**user_headers, "Origin": "http://localhost:5173"}
    )
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "idempotent-replayed"} <= exposed
    preflight = await client.options(
        f"/items/{item.id}",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "if-match, idempotency-key",
        },
    )
    assert preflight.status_code == 200
