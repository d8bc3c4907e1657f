"""Queueing, rendering and delivering emails.

`enqueue()` is what other features call. `EmailSender` runs beside the app (one per process,
started by `main.py`): it claims due rows, has the feature that queued each one compose it,
renders the Jinja2 templates (HTML and plain text), and sends with aiosmtplib, or writes it to the
log when SMTP is not configured. A failure is retried with exponential backoff; nothing is lost
while the SMTP server or the database is away, and no request ever waits for either.
"""

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from functools import cache
from typing import TYPE_CHECKING, Any

import aiosmtplib
import anyio
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import utcnow
from app.emails import crud
from app.emails.models import FAILED, LOGGED, PENDING, SENT, SKIPPED, OutboxEmail

if TYPE_CHECKING:
    from jinja2 import Environment

log = structlog.get_logger(__name__)

# The kind of the test email (`POST /utils/test-email/`), composed in emails/mail.py.
TEST_EMAIL = "emails.test"

_ENQUEUED = "emails.enqueued"
_NOW = timedelta(0)
_senders: "weakref.WeakSet[EmailSender]" = weakref.WeakSet()


@dataclass(frozen=True)
class Composed:
    """What a feature's composer makes of a queued email: to whom, which template, with what."""

    recipient: str
    subject: str
    template: str
    """`<template>.html` and `<template>.txt` under app/emails/templates/."""
    context: dict[str, Any] = field(default_factory=dict)
    """Template variables; a `link`, if any, is also what the log shows when emails are off."""


# (session, settings, recipient, payload) -> the message, or None: nothing to send after all.
Composer = Callable[[AsyncSession, Settings, str, dict[str, Any]], Awaitable[Composed | None]]


async def enqueue(
    session: AsyncSession, *, kind: str, recipient: str, payload: dict[str, Any] | None = None
) -> None:
    """Queue an email in the caller's transaction: sent if and only if that transaction commits.

    `kind` names a composer (a feature's `mail.COMPOSERS`); `payload` is stored in clear, so
    never put a secret in it: the composer makes links and tokens when the email is sent.
    """
    await crud.add(session, kind=kind, recipient=recipient, payload=payload or {})
    session.sync_session.info[_ENQUEUED] = True


async def count_pending(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Emails in the outbox not yet sent (nor given up), across every instance."""
    async with sessionmaker() as session:
        return await crud.count_pending(session)


@event.listens_for(Session, "after_commit")
def _wake_senders(session: Session) -> None:
    # The email is visible now: this process's sender need not wait for its next poll.
    if session.info.pop(_ENQUEUED, False):
        for sender in _senders:
            sender.wake()


@cache
def _templates() -> "Environment":
    # Built at the first email, not at import: jinja2 is a tenth of the app's import time, and
    # most processes (tests, CLI, an instance without EMAIL_SENDER) render none.
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("app.emails", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a missing variable is a bug, not an empty link
        enable_async=False,
    )


def render(composed: Composed, settings: Settings) -> EmailMessage:
    """The MIME message: plain text, with the HTML as its alternative."""
    context = {
        "project_name": settings.PROJECT_NAME,
        "frontend_host": settings.FRONTEND_HOST,
        "subject": composed.subject,
        **composed.context,
    }
    message = EmailMessage()
    sender_address = settings.EMAILS_FROM_EMAIL or "noreply@localhost"
    message["From"] = formataddr(
        (settings.EMAILS_FROM_NAME or settings.PROJECT_NAME, sender_address)
    )
    message["To"] = composed.recipient
    message["Subject"] = composed.subject
    message["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2] or None)
    message.set_content(_templates().get_template(f"{composed.template}.txt").render(context))
    message.add_alternative(
        _templates().get_template(f"{composed.template}.html").render(context), subtype="html"
    )
    return message


def render_html(composed: Composed, settings: Settings) -> str:
    """The HTML part alone (what the template's html-content route shows)."""
    html = render(composed, settings).get_body(preferencelist=("html",))
    assert html is not None
    return str(html.get_content())


async def deliver(message: EmailMessage, settings: Settings) -> None:
    """Send one message over SMTP; raises on any failure (the sender retries)."""
    await aiosmtplib.send(
        message,
        hostname=settings.SMTP_HOST,
        port=settings.SMTP_PORT,
        username=settings.SMTP_USER,
        password=settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None,
        use_tls=settings.SMTP_SSL,
        start_tls=settings.SMTP_TLS and not settings.SMTP_SSL,
        timeout=settings.SMTP_TIMEOUT_SECONDS,
    )


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Delay before the next try: EMAIL_RETRY_SECONDS, doubling, at most EMAIL_RETRY_MAX_SECONDS."""
    seconds = settings.EMAIL_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.EMAIL_RETRY_MAX_SECONDS))


class EmailSender:
    """Delivers the outbox, one email at a time, until cancelled."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        composers: Mapping[str, Composer],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._composers = composers
        self._wake = asyncio.Event()
        # Longest time one email may hold its claim: compose, render and one SMTP try.
        self._lease = timedelta(seconds=settings.SMTP_TIMEOUT_SECONDS * 3 + 30)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        _senders.add(self)
        log.info("email.sender_started", smtp=self._settings.emails_enabled)
        try:
            while True:
                try:
                    while await self.send_next():
                        pass
                except Exception as error:  # the database is away, say: try again later
                    log.warning("email.sender_error", error=f"{type(error).__name__}: {error}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.EMAIL_POLL_SECONDS)
                self._wake.clear()
        finally:
            _senders.discard(self)

    async def send_next(self) -> bool:
        """Try the oldest due email; False when there is none."""
        # Shielded, like `_finish`: a sender stopped now must not leave a claim it will not try
        # (bounded by the database timeouts).
        with anyio.CancelScope(shield=True):
            async with self._sessionmaker() as session:
                email = await crud.claim_next(session, now=utcnow(), lease=self._lease)
                await session.commit()
        if email is None:
            return False
        await self._try(email)
        return True

    async def _try(self, email: OutboxEmail) -> None:
        bound = log.bind(email_id=str(email.id), kind=email.kind, attempt=email.attempts)
        try:
            composed = await self._compose(email)
            if composed is None:
                bound.info("email.skipped")
                return await self._finish(email, SKIPPED)
            message = render(composed, self._settings)
            if not self._settings.emails_enabled:
                self._log_instead(bound, composed)
                return await self._finish(email, LOGGED, sent=True)
            await deliver(message, self._settings)
        except asyncio.CancelledError:
            # Stopped mid-try: hand the email back rather than leave it leased to a process
            # that is gone (the next one would wait out the lease).
            await self._finish(email, PENDING, error="interrupted: the sender stopped", due_in=_NOW)
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            if email.attempts >= self._settings.EMAIL_MAX_ATTEMPTS:
                bound.error("email.failed", error=reason)
                return await self._finish(email, FAILED, error=reason)
            delay = backoff(email.attempts, self._settings)
            bound.warning("email.retry", error=reason, retry_in=delay.total_seconds())
            return await self._finish(email, PENDING, error=reason, due_in=delay)
        bound.info("email.sent", recipient=composed.recipient)
        await self._finish(email, SENT, sent=True)

    async def _compose(self, email: OutboxEmail) -> Composed | None:
        composer = self._composers.get(email.kind)
        if composer is None:
            raise LookupError(f"no composer for kind {email.kind!r}")
        async with self._sessionmaker() as session:
            return await composer(session, self._settings, email.recipient, dict(email.payload))

    def _log_instead(self, bound: Any, composed: Composed) -> None:
        # In development this is the email: who, what, and the link to follow. Elsewhere the link
        # may be a live reset token, which does not belong in logs.
        details: dict[str, Any] = {"recipient": composed.recipient, "subject": composed.subject}
        if self._settings.ENVIRONMENT in ("local", "test"):
            details["link"] = composed.context.get("link")
            bound.info("email.logged", **details)
        else:
            bound.warning("email.not_sent", reason="SMTP_HOST/EMAILS_FROM_EMAIL not set", **details)

    async def _finish(
        self,
        email: OutboxEmail,
        status: str,
        *,
        sent: bool = False,
        error: str | None = None,
        due_in: timedelta | None = None,
    ) -> None:
        now = utcnow()
        # The outcome of a try is recorded even when the sender is stopped meanwhile.
        with anyio.CancelScope(shield=True):
            async with self._sessionmaker() as session:
                await crud.finish(
                    session,
                    email.id,
                    status=status,
                    sent_at=now if sent else None,
                    due_at=now + due_in if due_in is not None else None,
                    error=error,
                )
                await session.commit()
