from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UTCDateTime, UUIDPrimaryKey, utcnow

PENDING = "pending"
SENT = "sent"
LOGGED = "logged"  # emails are off: written to the log instead
SKIPPED = "skipped"  # nothing to send after all (an unregistered address asked for recovery)
FAILED = "failed"  # given up after EMAIL_MAX_ATTEMPTS


class OutboxEmail(UUIDPrimaryKey, CreatedAt, Base):
    """One email to send: what kind, to whom, with what (non-secret) data."""

    __tablename__ = "email_outbox"
    # The sender's query: pending rows that are due, oldest first.
    __table_args__ = (Index("ix_email_outbox_status_due_at", "status", "due_at"),)

    kind: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    """When it may be tried (again); a claim moves it past the claimer's lease."""
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(1000))

    def __repr__(self) -> str:
        return f"OutboxEmail(id={self.id!s}, kind={self.kind!r}, status={self.status!r})"
