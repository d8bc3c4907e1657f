"""Password hashing under pressure: logins wait in a bounded queue, one more is refused at once
(503 `hashing-busy` with `Retry-After`), and sign-ups and password changes still get a thread.

The pool is slowed by a gate, not by real argon2 costs: a login's verification blocks until the
test opens it, so the assertions are about order and state, never about how long anything took.
"""

import asyncio
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

import anyio
import httpx2
import pytest
from fastapi import FastAPI

from app.core.deps import PasswordsDep
from app.core.security import LOGIN_HASHING_NICENESS, HashingBusy, Passwords
from tests.core.test_database import (  # noqa: F401 - fixtures
    committing_app,
    committing_client,
    signup_and_login,
)
from tests.helpers import assert_problem, change_password, login

pytestmark = pytest.mark.anyio

WRONG = "wrong-password-"
# Guards against a hang when something is broken; never a time bound the test relies on.
HANG_GUARD_SECONDS = 20


def cheap_passwords(*, threads: int, queue_max: int) -> Passwords:
    return Passwords(
        time_cost=1, memory_cost=8192, parallelism=1, threads=threads, queue_max=queue_max
    )


# --- the queue itself -------------------------------------------------------------------------


async def test_a_login_past_the_queue_is_refused_without_waiting() -> None:
    # Two threads: one is the logins' share, the other is kept for everything else.
    passwords = cheap_passwords(threads=2, queue_max=1)
    release = anyio.Event()
    turns: list[str] = []

    async def login_turn(name: str) -> None:
        async with passwords.login_turn():
            turns.append(name)
            await release.wait()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(login_turn, "first")
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(login_turn, "queued")
            await anyio.wait_all_tasks_blocked()

            with pytest.raises(HashingBusy):
                async with passwords.login_turn():
                    turns.append("refused")
            assert turns == ["first"]
            release.set()

    assert turns == ["first", "queued"]
    # The queue has drained: a new login is admitted again.
    async with passwords.login_turn():
        pass


async def test_with_no_queue_a_login_is_admitted_only_to_a_free_thread() -> None:
    passwords = cheap_passwords(threads=1, queue_max=0)
    async with passwords.login_turn():
        with pytest.raises(HashingBusy):
            async with passwords.login_turn():
                pass
    async with passwords.login_turn():
        pass


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux keeps a nice value per thread")
async def test_a_logins_hashing_runs_at_a_low_priority_and_the_rest_as_usual(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = cheap_passwords(threads=2, queue_max=2)
    niceness: list[int] = []
    verify = passwords._verify_and_update

    def recording(password: str, hashed: str, *, rehash: bool = True) -> tuple[bool, str | None]:
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return verify(password, hashed, rehash=rehash)

    monkeypatch.setattr(passwords, "_verify_and_update", recording)
    hashed = await passwords.hash("a-password")

    async with passwords.login_turn():
        assert await passwords.verify("a-password", hashed)
    assert await passwords.verify("a-password", hashed)  # a password change's check
    normal = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    # The second check ran at normal priority, most likely on the very worker thread that
    # waited for the first: the demotion was the login's own thread's, not the worker's.
    assert niceness == [LOGIN_HASHING_NICENESS, normal]


async def test_the_refusal_is_a_503_problem_with_retry_after() -> None:
    error = HashingBusy()
    assert (error.status_code, error.code) == (503, "hashing-busy")
    assert error.headers == {"Retry-After": "1"}


# --- through HTTP, on a real app --------------------------------------------------------------


@dataclass
class GatedLogins:
    """Verifications of passwords starting with WRONG block until `gate` opens; the rest (and
    every new hash) run as usual."""

    passwords: Passwords
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    checked: list[str] = field(default_factory=list)


@pytest.fixture
def gated(committing_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedLogins]:  # noqa: F811
    # Two hashing threads (one for logins, one kept for the rest) and two places in the queue,
    # whatever this machine's core count.
    gated = GatedLogins(cheap_passwords(threads=2, queue_max=2))
    verify = gated.passwords._verify_and_update

    def gated_verify(password: str, hashed: str, *, rehash: bool = True) -> tuple[bool, str | None]:
        if password.startswith(WRONG):
            gated.checked.append(password)
            gated.entered.set()
            gated.gate.wait(HANG_GUARD_SECONDS)
        return verify(password, hashed, rehash=rehash)

    monkeypatch.setattr(gated.passwords, "_verify_and_update", gated_verify)
    dependency = get_args(PasswordsDep)[1].dependency
    committing_app.dependency_overrides[dependency] = lambda: gated.passwords
    try:
        yield gated
    finally:
        gated.gate.set()  # never leave a worker thread blocked
        committing_app.dependency_overrides.pop(dependency)


async def _first_done(
    tasks: list[asyncio.Task[httpx2.Response]], count: int
) -> list[httpx2.Response]:
    finished = asyncio.as_completed(tasks)
    return [await next(finished) for _ in range(count)]


async def test_logins_past_the_queue_get_503_at_once_while_signups_still_hash(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    gated: GatedLogins,
) -> None:
    email = f"committed-{uuid.uuid4().hex[:8]}@example.com"
    headers = await signup_and_login(committing_client, email)

    # 1 login's password is being checked (held at the gate), 2 wait: 2 more find it full.
    # The first is let in alone, so which ones wait does not depend on scheduling.
    attempts = [asyncio.create_task(login(committing_client, email, f"{WRONG}0"))]
    try:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await anyio.to_thread.run_sync(gated.entered.wait, HANG_GUARD_SECONDS)
            attempts += [
                asyncio.create_task(login(committing_client, email, f"{WRONG}{n}"))
                for n in range(1, 5)
            ]
            refused = await _first_done(attempts, 2)
            # They were answered while no verification could finish: they did not wait.
            for response in refused:
                assert_problem(response, 503, type_="urn:problem:hashing-busy")
                assert response.headers["retry-after"] == "1"
            await anyio.to_thread.run_sync(gated.entered.wait, HANG_GUARD_SECONDS)
            assert len(gated.checked) == 1
            assert sum(not attempt.done() for attempt in attempts) == 3

            # The logins hold their share and fill the queue: the rest still get a thread.
            signup = await committing_client.post(
                "/users/signup",
                json={
                    "email": f"committed-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "committed-2",
                },
            )
            assert signup.status_code == 201, signup.text
            changed = await change_password(committing_client, headers, "committed-1", "new-pw-1")
            assert changed.status_code == 200, changed.text
            assert sum(not attempt.done() for attempt in attempts) == 3

            gated.gate.set()
            answered = await asyncio.gather(*attempts)
    finally:
        gated.gate.set()
        for attempt in attempts:
            attempt.cancel()

    assert sorted(response.status_code for response in answered) == [400, 400, 400, 503, 503]
    # Only the three admitted logins were ever checked: nothing was hashed for the refused two.
    assert len(gated.checked) == 3
    # The queue drained: logins are served again.
    assert (await login(committing_client, email, "new-pw-1")).status_code == 200


async def test_the_login_documents_its_503(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "503" in schema["paths"]["/api/v1/login/access-token"]["post"]["responses"]
