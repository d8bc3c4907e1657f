import uuid

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UUIDPrimaryKey


class IdempotencyKey(UUIDPrimaryKey, CreatedAt, Base):
    """A key a client sent with a request, and the answer that request got.

    Inserted before the request writes anything, in its transaction, and completed with the
    answer before it commits: a committed key always has its answer, and a failed request (rolled
    back) leaves no key. The unique key is what a concurrent retry waits on (PostgreSQL) or
    queues behind (SQLite's one writer). Expired rows (`created_at`, indexed) are deleted as new
    keys are claimed.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "scope", "key"),)

    # No foreign key: `users` depends on this feature (its POST /users/ takes keys), not the other
    # way round. A deleted user's keys are forgotten when they expire; user ids are never reused.
    user_id: Mapped[uuid.UUID]
    # The route the key was used on: `POST /items/` (the route, as its router declares it).
    scope: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    # A keyed hash of the validated request body: the same key with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The answer; null only inside the transaction that claimed the key.
    status_code: Mapped[int | None]
    body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"IdempotencyKey(id={self.id!s}, scope={self.scope!r})"
