"""What the clients of the soak run were told, and the check that the database holds exactly that.

Every answer the server gives is a promise: a 201 says the item exists, a 200 to a conditional
`PATCH` says this is now the item, a 200 to a `DELETE` says it is gone. The ledger records each
promise as it is made; `verify` then reads the database and lists every promise it breaks:

- an acknowledged item that is missing, or a deleted one that is still there;
- a row nobody was told about (a duplicate from a retried create, for example);
- an item whose content is not the last state acknowledged for it;
- a lost update: two writes acknowledged on top of the same version (`If-Match` failed to stop
  the second one);
- a user whose `item_counts` row (the list's `count`) is not the number of their items.

A request that ended without an answer (connection error, 5xx) may or may not have happened, so
the item it touched is marked uncertain and only checked for existence rules that still hold.
"""

import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine


@dataclass(frozen=True)
class State:
    """One acknowledged content of an item, and the ETag the server gave it."""

    etag: str
    title: str
    description: str | None


@dataclass
class ItemRecord:
    id: str
    owner: str
    states: dict[str, State] = field(default_factory=dict)
    # The ETag each acknowledged conditional write was based on -> the ETag it produced.
    successors: dict[str, list[str]] = field(default_factory=dict)
    deleted: bool = False
    uncertain: bool = False

    def latest_known_etag(self) -> str | None:
        """An ETag with no acknowledged successor (the head of the chain), if any."""
        for etag in reversed(list(self.states)):
            if etag not in self.successors:
                return etag
        return None


@dataclass
class Ledger:
    items: dict[str, ItemRecord] = field(default_factory=dict)
    # Owner email -> ids of the items the owner was told exist (including deleted ones).
    by_owner: dict[str, list[str]] = field(default_factory=dict)
    # Owner emails whose creates may have happened without an answer.
    owners_with_uncertain_creates: set[str] = field(default_factory=set)
    idempotent_replays: int = 0
    idempotency_conflicts: int = 0
    stale_writes_refused: int = 0

    def created(self, owner: str, state: State, item_id: str) -> None:
        record = self.items.get(item_id)
        if record is None:
            record = self.items[item_id] = ItemRecord(item_id, owner)
            self.by_owner.setdefault(owner, []).append(item_id)
        record.states.setdefault(state.etag, state)

    def updated(self, item_id: str, *, based_on: str, state: State) -> None:
        record = self.items[item_id]
        record.states[state.etag] = state
        record.successors.setdefault(based_on, []).append(state.etag)

    def deleted(self, item_id: str) -> None:
        self.items[item_id].deleted = True

    def uncertain(self, item_id: str) -> None:
        self.items[item_id].uncertain = True

    def live_ids(self, owner: str) -> list[str]:
        return [i for i in self.by_owner.get(owner, []) if not self.items[i].deleted]


@dataclass
class Verdict:
    checked_items: int = 0
    problems: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


async def verify(ledger: Ledger, database_url: URL, owner_ids: dict[str, str]) -> Verdict:
    """Compare the ledger with the `items` table; `owner_ids` maps owner email -> user id."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT id, owner_id, title, description FROM items"))
            ).all()
            counted = (
                await connection.execute(text("SELECT owner_id, count FROM item_counts"))
            ).all()
    finally:
        await engine.dispose()

    verdict = Verdict()
    email_of = {str(uuid.UUID(str(user_id))): email for email, user_id in owner_ids.items()}
    stored = {str(uuid.UUID(str(row.id))): row for row in rows}

    for item_id, record in ledger.items.items():
        verdict.checked_items += 1
        # Two writes acknowledged on top of one version: the second overwrote the first unseen.
        for based_on, heads in record.successors.items():
            if len(heads) > 1:
                verdict.problems.append(
                    f"lost update on item {item_id}: {len(heads)} writes acknowledged on "
                    f"version {based_on}"
                )
        row = stored.get(item_id)
        if record.deleted:
            if row is not None:
                verdict.problems.append(f"item {item_id} was deleted (200) but is still stored")
            verdict.counts["deleted and gone"] += 1
            continue
        if row is None:
            if not record.uncertain:
                verdict.problems.append(f"item {item_id} was acknowledged but is not stored")
            continue
        if email_of.get(str(uuid.UUID(str(row.owner_id)))) != record.owner:
            verdict.problems.append(f"item {item_id} belongs to another user than its creator")
        if record.uncertain:
            verdict.counts["uncertain (not compared)"] += 1
            continue
        head = record.latest_known_etag()
        expected = record.states[head] if head else None
        if expected is None or (row.title, row.description) != (
            expected.title,
            expected.description,
        ):
            verdict.problems.append(
                f"item {item_id} holds {row.title!r}/{row.description!r}, not the last "
                f"acknowledged state {expected}"
            )
        else:
            verdict.counts["stored as acknowledged"] += 1

    for item_id, row in stored.items():
        if item_id in ledger.items:
            continue
        owner = email_of.get(str(uuid.UUID(str(row.owner_id))))
        if owner is None:
            continue  # not a soak client's item
        if owner in ledger.owners_with_uncertain_creates:
            verdict.counts["unacknowledged create (request failed)"] += 1
        else:
            verdict.problems.append(f"item {item_id} of {owner} was never acknowledged")

    # The list's `count` (item_counts, kept by triggers) against the rows, for every owner.
    owned = Counter(str(uuid.UUID(str(row.owner_id))) for row in rows)
    kept = {str(uuid.UUID(str(owner))): count for owner, count in counted}
    for owner in owned.keys() | kept.keys():
        if owned[owner] != kept.get(owner, 0):
            verdict.problems.append(
                f"user {owner} owns {owned[owner]} items but item_counts says {kept.get(owner)}"
            )
    return verdict
