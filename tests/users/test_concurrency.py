"""No lost updates on accounts: of concurrent changes that read the same state, one is stored
and acknowledged, the others are refused; none silently overwrites a change it never saw.

Real commits (`committing_app`) and real concurrency (`asyncio.gather` over the ASGI transport).
Each write is recorded with the state its request read (`User.version`, or the password hash
for a password change), and a barrier holds every write until all the requests have read, so
that they truly race wherever the database lets them.

The invariant is per *generation* (the requests that read one version): exactly one of them is
acknowledged, the others are refused, and the acknowledged writes form a chain, each made on the
state the previous one left, the last being what is stored. On PostgreSQL the five requests are
one generation: one 200, four refusals. On SQLite a request holds the process's one connection
from its first read to its commit (`app.core.db`), so a request that writes reads only after the
previous one committed: five generations of one request each, five 200s, and nothing is lost.
A password change releases the connection while hashing, so there the requests race on both.

With `If-Match` the refusals are 412s that name the winner's ETag; of concurrent deletes of one
account, one is a 200 and the others 404s.
"""

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.users import crud
from app.users.models import User
from tests.core.test_database import (  # noqa: F401 - fixtures
    committing_app,
    committing_client,
    signup_and_login,
)
from tests.helpers import assert_problem, change_password, login
from tests.users.factories import UserFactory

pytestmark = pytest.mark.anyio

N = 5
# A guard against a hang, should some request never reach its write; not a timing assumption.
BARRIER_TIMEOUT_SECONDS = 20


@dataclass
class Race:
    """Records what each write read, and holds every write until `parties` have read."""

    parties: int
    read: dict[str, Any] = field(default_factory=dict)
    everyone_read: anyio.Event = field(default_factory=anyio.Event)

    async def arrive(self, key: str, state: Any) -> None:
        self.read[key] = state
        if len(self.read) >= self.parties:
            self.everyone_read.set()
        with anyio.move_on_after(BARRIER_TIMEOUT_SECONDS):
            await self.everyone_read.wait()


def _committed_email(label: str = "") -> str:
    return f"committed-{label}{uuid.uuid4().hex[:8]}@example.com"


async def _stored(engine: AsyncEngine, user_id: uuid.UUID) -> User:
    async with AsyncSession(engine) as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user


async def _user_id(engine: AsyncEngine, email: str) -> uuid.UUID:
    async with AsyncSession(engine) as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def _race_updates(monkeypatch: pytest.MonkeyPatch, settings: Settings, *, key: str) -> Race:
    """Record the version each `users.crud.update` read, keyed by the value of `key` it
    writes, and hold the writes until every request has read (see the module docstring)."""
    # On SQLite a request that waited here would hold the only connection: the others could
    # never read, and the barrier would only wait out its timeout.
    race = Race(parties=1 if settings.is_sqlite else N)
    update = crud.update

    async def racing_update(
        session: AsyncSession, user: User, *, changes: Any, **options: Any
    ) -> User:
        await race.arrive(str(changes[key]), user.version)
        return await update(session, user, changes=changes, **options)

    monkeypatch.setattr(crud, "update", racing_update)
    return race


def assert_no_lost_update(
    race: Race,
    statuses: dict[str, int],
    *,
    initial_version: int,
    stored_value: str,
    stored_version: int,
    settings: Settings,
) -> None:
    assert set(race.read) == set(statuses), "every request reached its write"
    generations: defaultdict[int, list[str]] = defaultdict(list)
    for value, version in race.read.items():
        generations[version].append(value)
    acknowledged: dict[int, str] = {}
    for version, values in generations.items():
        ok = [value for value in values if statuses[value] == 200]
        assert len(ok) == 1, f"of the writes that read version {version}, one is stored: {ok}"
        assert all(statuses[value] == 409 for value in values if value not in ok), statuses
        acknowledged[version] = ok[0]
    # Each acknowledged write was made on the state the previous one left.
    assert sorted(acknowledged) == list(range(initial_version, initial_version + len(acknowledged)))
    assert stored_version == initial_version + len(acknowledged)
    assert stored_value == acknowledged[max(acknowledged)]
    if not settings.is_sqlite:
        # The race happened: every request read the same state before any wrote.
        assert list(generations) == [initial_version]


async def test_concurrent_password_changes_one_wins_the_others_are_refused(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = _committed_email()
    headers = await signup_and_login(committing_client, email)
    # The requests release their connection while hashing, so all of them can read the old
    # password before any stores a new one, on either database.
    race = Race(parties=N)
    replace_password = crud.replace_password

    async def racing_replace(
        session: AsyncSession, user: User, *, old_hash: str, new_hash: str
    ) -> bool:
        await race.arrive(new_hash, old_hash)
        return await replace_password(session, user, old_hash=old_hash, new_hash=new_hash)

    monkeypatch.setattr(crud, "replace_password", racing_replace)
    new_passwords = [f"new-password-{n}" for n in range(N)]

    responses = await asyncio.gather(
        *(change_password(committing_client, headers, "committed-1", new) for new in new_passwords)
    )

    assert len(set(race.read.values())) == 1, "every change checked against the same old hash"
    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] + [400] * (N - 1), statuses
    for response in responses:
        if response.status_code == 400:
            assert assert_problem(response, 400)["detail"] == "Incorrect password"
    acknowledged = new_passwords[statuses.index(200)]
    monkeypatch.undo()
    for password in [*new_passwords, "committed-1"]:
        expected = 200 if password == acknowledged else 400
        assert (await login(committing_client, email, password)).status_code == expected, password
    # The change ended the session the requests came from.
    assert (await committing_client.get("/users/me", headers=headers)).status_code == 401


async def _race(
    requests: list[tuple[str, Callable[[], Awaitable[httpx2.Response]]]],
) -> dict[str, int]:
    responses = await asyncio.gather(*(send() for _, send in requests))
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, type_="urn:problem:concurrent-update")
    return {
        value: response.status_code
        for (value, _), response in zip(requests, responses, strict=True)
    }


async def test_concurrent_email_changes_never_lose_an_acknowledged_one(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = _committed_email()
    headers = await signup_and_login(committing_client, email)
    user_id = await _user_id(engine, email)
    initial = (await _stored(engine, user_id)).version
    race = _race_updates(monkeypatch, settings, key="email")
    new_emails = [_committed_email(f"{n}-") for n in range(N)]

    def send(new_email: str) -> Callable[[], Awaitable[httpx2.Response]]:
        return lambda: committing_client.patch(
            "/users/me", headers=headers, json={"email": new_email}
        )

    statuses = await _race([(new_email, send(new_email)) for new_email in new_emails])

    stored = await _stored(engine, user_id)
    assert_no_lost_update(
        race,
        statuses,
        initial_version=initial,
        stored_value=stored.email,
        stored_version=stored.version,
        settings=settings,
    )
    me = await committing_client.get("/users/me", headers=headers)
    assert me.json()["email"] == stored.email


async def test_concurrent_admin_updates_never_lose_an_acknowledged_one(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin_email = _committed_email("admin-")
    async with AsyncSession(engine) as session:
        session.add(UserFactory.build(email=admin_email, password="admin-pass", is_superuser=True))
        await session.commit()
    token = (await login(committing_client, admin_email, "admin-pass")).json()["access_token"]
    admin = {"Authorization": f"Bearer {token}"}
    email = _committed_email()
    await signup_and_login(committing_client, email)
    user_id = await _user_id(engine, email)
    initial = (await _stored(engine, user_id)).version
    race = _race_updates(monkeypatch, settings, key="full_name")
    names = [f"Name {n}" for n in range(N)]

    def send(name: str) -> Callable[[], Awaitable[httpx2.Response]]:
        return lambda: committing_client.patch(
            f"/users/{user_id}", headers=admin, json={"full_name": name}
        )

    statuses = await _race([(name, send(name)) for name in names])

    stored = await _stored(engine, user_id)
    assert stored.full_name is not None
    assert_no_lost_update(
        race,
        statuses,
        initial_version=initial,
        stored_value=stored.full_name,
        stored_version=stored.version,
        settings=settings,
    )


async def _admin_and_account(
    client: httpx2.AsyncClient, engine: AsyncEngine
) -> tuple[dict[str, str], uuid.UUID]:
    admin_email = _committed_email("admin-")
    async with AsyncSession(engine) as session:
        session.add(UserFactory.build(email=admin_email, password="admin-pass", is_superuser=True))
        await session.commit()
    token = (await login(client, admin_email, "admin-pass")).json()["access_token"]
    email = _committed_email()
    await signup_and_login(client, email)
    return {"Authorization": f"Bearer {token}"}, await _user_id(engine, email)


async def test_concurrent_deletes_of_an_account_one_succeeds_the_others_find_nothing(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin, user_id = await _admin_and_account(committing_client, engine)
    race = Race(parties=1 if settings.is_sqlite else N)
    delete = crud.delete

    async def racing_delete(session: AsyncSession, user: User, **options: Any) -> None:
        await race.arrive(str(len(race.read)), user.version)
        await delete(session, user, **options)

    monkeypatch.setattr(crud, "delete", racing_delete)

    responses = await asyncio.gather(
        *(committing_client.delete(f"/users/{user_id}", headers=admin) for _ in range(N))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [404] * (N - 1), statuses
    for response in responses:
        if response.status_code == 404:
            assert_problem(response, 404, type_="urn:problem:user-not-found")
    if not settings.is_sqlite:
        assert len(race.read) == N, "every delete read the account before one was stored"
    async with AsyncSession(engine) as session:
        assert await session.get(User, user_id) is None


async def test_concurrent_admin_updates_with_one_if_match_one_is_stored_the_others_get_412(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin, user_id = await _admin_and_account(committing_client, engine)
    read = await committing_client.get(f"/users/{user_id}", headers=admin)
    race = _race_updates(monkeypatch, settings, key="full_name")
    names = [f"Name {n}" for n in range(N)]

    responses = await asyncio.gather(
        *(
            committing_client.patch(
                f"/users/{user_id}",
                headers={**admin, "If-Match": read.headers["etag"]},
                json={"full_name": name},
            )
            for name in names
        )
    )

    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] + [412] * (N - 1), statuses
    winner = responses[statuses.index(200)]
    for response in responses:
        if response.status_code == 412:
            assert_problem(response, 412, type_="urn:problem:precondition-failed")
            assert response.headers["etag"] == winner.headers["etag"]
    if not settings.is_sqlite:
        assert len(race.read) == N, "every update read the account before one was stored"
    stored = await _stored(engine, user_id)
    assert stored.full_name == winner.json()["full_name"]
    assert f'"{stored.version}"' == winner.headers["etag"]
