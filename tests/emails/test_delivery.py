"""Email delivery against a real SMTP server (aiosmtpd, in-process) and the real database: the
recovery email arrives and its link resets the password; an SMTP outage delays mail but loses
none and answers no request with an error; a pending email survives a restart; two senders never
send one email twice; without SMTP the email is written to the log.

These tests commit (the sender runs beside the app, on its own connections), so everything they
create belongs to addresses `committed-*` and is deleted afterwards.
"""

import asyncio
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx2
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.emails import service as emails_service
from app.emails.mail import COMPOSERS
from app.emails.models import OutboxEmail
from app.main import create_app
from app.users.models import User
from tests.helpers import login

pytestmark = pytest.mark.anyio

# aiosmtpd narrates every SMTP command at INFO.
logging.getLogger("mail.log").setLevel(logging.WARNING)

PASSWORD = "committed-password-1"
NEW_PASSWORD = "committed-password-2"


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(port: int, mailbox: Mailbox) -> Iterator[None]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check` holds; fail after 15 s (a bound for a stuck sender, not a goal)."""
    async with asyncio.timeout(15):
        while not await check():  # noqa: ASYNC110 - the state is in another task or process
            await asyncio.sleep(0.05)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def mail_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": port,
            "SMTP_TLS": False,
            "SMTP_TIMEOUT_SECONDS": 2.0,
            "EMAILS_FROM_EMAIL": "noreply@example.com",
            "EMAIL_SENDER": True,
            "EMAIL_POLL_SECONDS": 0.05,
            "EMAIL_RETRY_SECONDS": 0.1,
            "EMAIL_RETRY_MAX_SECONDS": 0.2,
            "FIRST_SUPERUSER": "committed-admin@example.com",
        }
    )


@pytest.fixture(autouse=True)
async def _clean_up(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with engine.begin() as connection:
        await connection.execute(delete(OutboxEmail))
        await connection.execute(delete(User).where(User.email.startswith("committed-")))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    """The app as a server runs it: its own engine and commits, the email sender started."""
    app = create_app(settings)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client,
    ):
        yield app, client


async def outbox(engine: AsyncEngine) -> list[OutboxEmail]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(OutboxEmail).order_by(OutboxEmail.created_at))
        return [OutboxEmail(**row._mapping) for row in rows]


async def signup(client: httpx2.AsyncClient) -> str:
    email = f"committed-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post("/users/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


def reset_token(message: EmailMessage, settings: Settings) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    found = re.search(
        re.escape(settings.FRONTEND_HOST) + r"/reset-password\?token=(\S+)", text.get_content()
    )
    assert found is not None, text.get_content()
    return found.group(1)


async def test_the_recovery_email_arrives_and_its_link_resets_the_password(
    mail_settings: Settings, port: int, engine: AsyncEngine
) -> None:
    mailbox = Mailbox()
    with smtp_server(port, mailbox):
        async with running(mail_settings) as (_, client):
            email = await signup(client)
            response = await client.post(f"/password-recovery/{email}")
            assert response.status_code == 200

            async def arrived() -> bool:
                return len(mailbox.messages) == 1

            await eventually(arrived)
            message = mailbox.messages[0]
            assert message["To"] == email
            # Long headers are folded; a reader unfolds them.
            subject = " ".join(str(message["Subject"]).split())
            assert subject == f"FastAPI Service - Password recovery for user {email}"
            assert "noreply@example.com" in message["From"]
            html = message.get_body(preferencelist=("html",))
            assert html is not None
            assert "reset-password?token=" in html.get_content()

            token = reset_token(message, mail_settings)
            reset = await client.post(
                "/reset-password/", json={"token": token, "new_password": NEW_PASSWORD}
            )
            assert reset.status_code == 200, reset.text
            assert (await login(client, email, NEW_PASSWORD)).status_code == 200
            assert (await login(client, email, PASSWORD)).status_code == 400

    [row] = await outbox(engine)
    assert (row.status, row.attempts, row.sent_at is not None) == ("sent", 1, True)


async def test_an_unregistered_address_gets_nothing(
    mail_settings: Settings, port: int, engine: AsyncEngine
) -> None:
    mailbox = Mailbox()
    with smtp_server(port, mailbox):
        async with running(mail_settings) as (_, client):
            response = await client.post("/password-recovery/committed-nobody@example.com")
            assert response.status_code == 200

            async def skipped() -> bool:
                return [row.status for row in await outbox(engine)] == ["skipped"]

            await eventually(skipped)
    assert mailbox.messages == []


async def test_an_smtp_outage_delays_the_email_across_a_restart_and_it_arrives_once(
    mail_settings: Settings, port: int, engine: AsyncEngine
) -> None:
    # Nothing listens on the port yet: every try fails, and is retried with backoff.
    async with running(mail_settings) as (_, client):
        email = await signup(client)
        response = await client.post(f"/password-recovery/{email}")
        assert response.status_code == 200  # the request never waits for SMTP

        async def retried() -> bool:
            rows = await outbox(engine)
            return len(rows) == 1 and rows[0].attempts >= 2

        await eventually(retried)
    [pending] = await outbox(engine)
    assert pending.status == "pending"
    assert pending.last_error is not None

    # A new process, and the SMTP server is back.
    mailbox = Mailbox()
    with smtp_server(port, mailbox):
        async with running(mail_settings) as (_, client):

            async def sent() -> bool:
                return [row.status for row in await outbox(engine)] == ["sent"]

            await eventually(sent)
            await asyncio.sleep(0.3)  # several more polls: nothing is sent twice
    assert [message["To"] for message in mailbox.messages] == [email]
    token = reset_token(mailbox.messages[0], mail_settings)
    async with running(mail_settings) as (_, client):
        reset = await client.post(
            "/reset-password/", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert reset.status_code == 200


async def test_two_senders_never_send_one_email_twice(
    mail_settings: Settings, port: int, engine: AsyncEngine
) -> None:
    # Two senders on their own engines (connection pools), as in two processes, draining one
    # outbox: on PostgreSQL each row is claimed FOR UPDATE SKIP LOCKED by exactly one of them.
    recipients = [f"committed-{n}@example.com" for n in range(30)]
    async with create_sessionmaker(engine)() as session:
        for recipient in recipients:
            await emails_service.enqueue(session, kind="emails.test", recipient=recipient)
        await session.commit()

    mailbox = Mailbox()
    engines = [create_engine(mail_settings) for _ in range(2)]
    senders = [
        emails_service.EmailSender(create_sessionmaker(e), mail_settings, COMPOSERS)
        for e in engines
    ]
    try:
        with smtp_server(port, mailbox):
            tasks = [asyncio.create_task(sender.run()) for sender in senders]

            async def all_sent() -> bool:
                return {row.status for row in await outbox(engine)} == {"sent"}

            await eventually(all_sent)
            await asyncio.sleep(0.3)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for e in engines:
            await e.dispose()
    delivered = [message["To"] for message in mailbox.messages]
    assert sorted(delivered) == sorted(recipients)
    assert {row.attempts for row in await outbox(engine)} == {1}


async def test_without_smtp_the_email_is_written_to_the_log(
    settings: Settings, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    logged_settings = settings.model_copy(
        update={
            "EMAIL_SENDER": True,
            "EMAIL_POLL_SECONDS": 0.05,
            "FIRST_SUPERUSER": "committed-admin@example.com",
        }
    )
    async with running(logged_settings) as (_, client):
        email = await signup(client)
        assert (await client.post(f"/password-recovery/{email}")).status_code == 200

        async def logged() -> bool:
            return [row.status for row in await outbox(engine)] == ["logged"]

        await eventually(logged)
    output = capsys.readouterr().out
    line = next(line for line in output.splitlines() if "email.logged" in line)
    assert email in line
    assert f"{settings.FRONTEND_HOST}/reset-password?token=" in line
