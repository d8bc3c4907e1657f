import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UTCDateTime, UUIDPrimaryKey


class RefreshToken(UUIDPrimaryKey, CreatedAt, Base):
    """One refresh token of a session (its family). Stored only as a SHA-256 hash: the token is
    256 random bits, so a fast hash is enough and a database dump holds nothing usable."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when it is exchanged for a new pair; presenting it again after that is theft.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"RefreshToken(id={self.id!s}, session_id={self.session_id!s})"
