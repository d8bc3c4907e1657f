import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UTCDateTime, UUIDPrimaryKey


class User(UUIDPrimaryKey, CreatedAt, Base):
    # "user" is a reserved word in PostgreSQL.
    __tablename__ = "users"

    # Stored lower-cased (schemas normalise it), so the unique index is case-insensitive in effect.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    # Optimistic locking: every ORM update says `WHERE version = <the version it read>`, so of two
    # concurrent changes to one account the second fails (409) instead of silently undoing the
    # first.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declaration

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, email={self.email!r})"


class UserSession(UUIDPrimaryKey, CreatedAt, Base):
    """A signed-in session: what an access token's `sid` names, and what its refresh tokens
    renew. Checked on every request in the query that loads the user, so ending it (logout, a
    password change, deactivation, demotion) refuses its access tokens at once."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id_ended_at", "user_id", "ended_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_reason: Mapped[str | None] = mapped_column(String(50))

    def __repr__(self) -> str:
        return f"UserSession(id={self.id!s}, user_id={self.user_id!s})"
