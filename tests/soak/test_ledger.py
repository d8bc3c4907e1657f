"""The soak's verdict must catch each broken promise it claims to catch."""

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.soak.ledger import Ledger, State, verify

pytestmark = pytest.mark.anyio

OWNER = "owner@example.com"
OWNER_ID = str(uuid.uuid4())


async def _database(
    tmp_path: Path, rows: list[tuple[str, str, str | None]], counted: int | None = None
) -> URL:
    """`rows` of the owner's items, and their count in item_counts (`counted`: another one)."""
    url = make_url(f"sqlite+aiosqlite:///{tmp_path / 'soak.db'}")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE items (id TEXT, owner_id TEXT, title TEXT, description TEXT)")
        )
        await connection.execute(text("CREATE TABLE item_counts (owner_id TEXT, count INTEGER)"))
        for item_id, title, description in rows:
            await connection.execute(
                text("INSERT INTO items VALUES (:id, :owner, :title, :description)"),
                {"id": item_id, "owner": OWNER_ID, "title": title, "description": description},
            )
        await connection.execute(
            text("INSERT INTO item_counts VALUES (:owner, :count)"),
            {"owner": OWNER_ID, "count": len(rows) if counted is None else counted},
        )
    await engine.dispose()
    return url


def _ledger_with_item(item_id: str) -> Ledger:
    ledger = Ledger()
    ledger.created(OWNER, State('"1"', "first", None), item_id)
    ledger.updated(item_id, based_on='"1"', state=State('"2"', "second", "x"))
    return ledger


async def test_the_acknowledged_state_passes(tmp_path: Path) -> None:
    item_id = str(uuid.uuid4())
    url = await _database(tmp_path, [(item_id, "second", "x")])
    verdict = await verify(_ledger_with_item(item_id), url, {OWNER: OWNER_ID})
    assert verdict.problems == []
    assert verdict.counts["stored as acknowledged"] == 1


async def test_a_count_that_is_not_the_rows_is_reported(tmp_path: Path) -> None:
    item_id = str(uuid.uuid4())
    url = await _database(tmp_path, [(item_id, "second", "x")], counted=2)
    verdict = await verify(_ledger_with_item(item_id), url, {OWNER: OWNER_ID})
    assert verdict.problems == [f"user {OWNER_ID} owns 1 items but item_counts says 2"]


async def test_an_older_state_is_reported(tmp_path: Path) -> None:
    item_id = str(uuid.uuid4())
    url = await _database(tmp_path, [(item_id, "first", None)])
    verdict = await verify(_ledger_with_item(item_id), url, {OWNER: OWNER_ID})
    assert len(verdict.problems) == 1
    assert "not the last acknowledged state" in verdict.problems[0]


async def test_two_writes_on_one_version_are_a_lost_update(tmp_path: Path) -> None:
    item_id = str(uuid.uuid4())
    ledger = _ledger_with_item(item_id)
    ledger.updated(item_id, based_on='"1"', state=State('"3"', "third", None))
    url = await _database(tmp_path, [(item_id, "third", None)])
    verdict = await verify(ledger, url, {OWNER: OWNER_ID})
    assert any(problem.startswith("lost update") for problem in verdict.problems)


async def test_missing_deleted_and_unacknowledged_rows_are_reported(tmp_path: Path) -> None:
    missing, deleted, stranger = (str(uuid.uuid4()) for _ in range(3))
    ledger = _ledger_with_item(missing)
    ledger.created(OWNER, State('"1"', "gone", None), deleted)
    ledger.deleted(deleted)
    url = await _database(tmp_path, [(deleted, "gone", None), (stranger, "dup", None)])
    verdict = await verify(ledger, url, {OWNER: OWNER_ID})
    assert sorted(verdict.problems) == sorted(
        [
            f"item {missing} was acknowledged but is not stored",
            f"item {deleted} was deleted (200) but is still stored",
            f"item {stranger} of {OWNER} was never acknowledged",
        ]
    )


async def test_rows_of_failed_creates_are_not_blamed(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.owners_with_uncertain_creates.add(OWNER)
    url = await _database(tmp_path, [(str(uuid.uuid4()), "maybe", None)])
    verdict = await verify(ledger, url, {OWNER: OWNER_ID})
    assert verdict.problems == []
    assert verdict.counts["unacknowledged create (request failed)"] == 1
