import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UTCDateTime, UUIDPrimaryKey


class OidcLoginCode(UUIDPrimaryKey, CreatedAt, Base):
    """The one-time code a provider's callback hands the frontend, exchanged once and within a
    minute for a token pair. Stored only as a SHA-256 hash (it is 256 random bits)."""

    __tablename__ = "oidc_login_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Indexed: expired rows are deleted as new codes are issued.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"OidcLoginCode(id={self.id!s}, user_id={self.user_id!s})"
