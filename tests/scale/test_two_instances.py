"""Two real app servers on one PostgreSQL and one Redis act as one service: a token from one works
on the other, a session ended on one is ended on the other, a limit reached through one holds on
the other, and an email queued by either is sent once while both senders run. Each test runs
with the instances straight on PostgreSQL, then through PgBouncer in transaction mode, where a
mixed concurrent load also runs without an error.
"""

import asyncio
import uuid
from collections import Counter

import httpx2
import pytest
from sqlalchemy.engine import URL

from tests.core import outage
from tests.emails.test_delivery import Mailbox
from tests.helpers import change_password, login
from tests.scale.instances import LOGIN_FAILURES_PER_ACCOUNT, Instance, failures_logged

pytestmark = pytest.mark.anyio

PASSWORD = "scale-password-1"
NEW_PASSWORD = "scale-password-2"
EMAILS = 12  # recovery emails queued, alternately through A and B


async def signup(client: httpx2.AsyncClient) -> str:
    email = f"scale-{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post("/users/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


async def bearer(
    client: httpx2.AsyncClient, email: str, password: str = PASSWORD
) -> dict[str, str]:
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_token_issued_by_one_instance_works_on_the_other(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    email = await signup(a.client)
    headers = await bearer(a.client, email)
    me = await b.client.get("/users/me", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    # And the other way round, for what one writes and the other reads.
    created = await b.client.post("/items/", headers=headers, json={"title": "from b"})
    assert created.status_code == 201, created.text
    read = await a.client.get(f"/items/{created.json()['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json()["title"] == "from b"


async def test_a_logout_or_password_change_on_one_instance_ends_sessions_on_the_other(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    email = await signup(a.client)
    first = await bearer(a.client, email)
    second = await bearer(b.client, email)
    assert (await b.client.get("/users/me", headers=first)).status_code == 200

    assert (await a.client.post("/logout", headers=first)).status_code == 200
    ended = await b.client.get("/users/me", headers=first)
    assert ended.status_code == 401
    assert ended.json()["detail"] == "The session has ended: log in again"
    assert (await b.client.get("/users/me", headers=second)).status_code == 200

    changing = await bearer(a.client, email)
    response = await change_password(a.client, changing, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200, response.text
    assert (await b.client.get("/users/me", headers=second)).status_code == 401
    assert (await b.client.get("/users/me", headers=changing)).status_code == 401
    assert (await login(b.client, email, PASSWORD)).status_code == 400
    renewed = await bearer(b.client, email, NEW_PASSWORD)
    assert (await a.client.get("/users/me", headers=renewed)).status_code == 200


async def test_a_login_limit_reached_through_one_instance_holds_on_the_other(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    email = await signup(b.client)
    # One failure short of the limit, on A: B still lets the right password in...
    spared = await signup(b.client)
    for _ in range(LOGIN_FAILURES_PER_ACCOUNT - 1):
        assert (await login(a.client, spared, "wrong-password")).status_code == 400
    assert (await login(b.client, spared, PASSWORD)).status_code == 200
    # ... and at the limit, on A, B refuses even the right one.
    for _ in range(LOGIN_FAILURES_PER_ACCOUNT):
        assert (await login(a.client, email, "wrong-password")).status_code == 400
    refused = await login(b.client, email, PASSWORD)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert (await login(a.client, email, PASSWORD)).status_code == 429


async def test_an_email_queued_by_either_instance_is_sent_once_with_both_senders_running(
    instances: tuple[Instance, Instance], mailbox: tuple[Mailbox, int], scale_url: URL
) -> None:
    a, b = instances
    box, _ = mailbox
    emails = await asyncio.gather(*(signup((a, b)[i % 2].client) for i in range(EMAILS)))
    answers = await asyncio.gather(
        *(
            (a, b)[i % 2].client.post(f"/password-recovery/{email}")
            for i, email in enumerate(emails)
        )
    )
    assert [answer.status_code for answer in answers] == [200] * EMAILS

    def received() -> Counter[str]:
        return Counter(str(message["To"]) for message in box.messages if message["To"] in emails)

    async with asyncio.timeout(30):
        while sum(received().values()) < EMAILS:  # noqa: ASYNC110 - the senders are elsewhere
            await asyncio.sleep(0.05)
    # Twenty poll intervals more: a second copy would have arrived by now.
    await asyncio.sleep(1.0)
    assert received() == dict.fromkeys(emails, 1)

    admin = await outage.admin_connect(scale_url)
    try:
        rows = await admin.fetch(
            "SELECT status, attempts FROM email_outbox WHERE recipient = ANY($1::text[])", emails
        )
    finally:
        await admin.close()
    assert sorted((row["status"], row["attempts"]) for row in rows) == [("sent", 1)] * EMAILS
    # Both senders ran, and between them logged each email sent once (no other test of a pair
    # queues email).
    for instance in instances:
        assert any(event.get("event") == "email.sender_started" for event in instance.log_events())
    sent = [event for instance in instances for event in instance.log_events()]
    assert sum(event.get("event") == "email.sent" for event in sent) == EMAILS


async def test_a_mixed_concurrent_load_on_both_instances_has_no_error(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances

    async def user(index: int) -> None:
        mine, other = (a, b) if index % 2 else (b, a)
        email = await signup(mine.client)
        headers = await bearer(other.client, email)
        for round_ in range(3):
            created = await mine.client.post(
                "/items/", headers=headers, json={"title": f"item {round_}"}
            )
            assert created.status_code == 201, created.text
            item = created.json()["id"]
            updated = await other.client.patch(
                f"/items/{item}", headers=headers, json={"description": "updated"}
            )
            assert updated.status_code == 200, updated.text
            page = await mine.client.get("/items/", headers=headers)
            assert page.status_code == 200, page.text
            assert page.json()["count"] == round_ + 1
        assert (await other.client.get("/users/me", headers=headers)).status_code == 200

    await asyncio.gather(*(user(index) for index in range(12)))
    assert failures_logged(a) == []
    assert failures_logged(b) == []
