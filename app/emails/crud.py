"""Database access for the outbox. Flushes, never commits."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.emails.models import PENDING, OutboxEmail


async def add(
    session: AsyncSession, *, kind: str, recipient: str, payload: dict[str, Any]
) -> OutboxEmail:
    """Queue an email, in the caller's transaction."""
    email = OutboxEmail(kind=kind, recipient=recipient, payload=payload, status=PENDING)
    session.add(email)
    await session.flush()
    return email


async def claim_next(
    session: AsyncSession, *, now: datetime, lease: timedelta
) -> OutboxEmail | None:
    """The oldest due pending email, leased to the caller until `now + lease`.

    FOR UPDATE SKIP LOCKED on PostgreSQL: concurrent senders in other processes each take a
    different row, and none waits for another. (SQLite ignores it; its write transactions run
    one at a time anyway.) Commit right after, so the lease is visible to the others.
    """
    email = await session.scalar(
        select(OutboxEmail)
        .where(OutboxEmail.status == PENDING, OutboxEmail.due_at <= now)
        .order_by(OutboxEmail.due_at, OutboxEmail.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if email is not None:
        email.due_at = now + lease
        email.attempts += 1
        await session.flush()
    return email


async def finish(
    session: AsyncSession,
    email_id: uuid.UUID,
    *,
    status: str,
    due_at: datetime | None = None,
    sent_at: datetime | None = None,
    error: str | None = None,
) -> None:
    """Record the outcome of one try."""
    values: dict[str, Any] = {"status": status, "last_error": error[:1000] if error else None}
    if due_at is not None:
        values["due_at"] = due_at
    if sent_at is not None:
        values["sent_at"] = sent_at
    await session.execute(update(OutboxEmail).where(OutboxEmail.id == email_id).values(**values))


async def count_pending(session: AsyncSession) -> int:
    """Emails still to send (retries included). Reads the status index's pending entries only:
    its cost follows the backlog, not the table's history of sent emails."""
    count = await session.scalar(
        select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == PENDING)
    )
    return count or 0
