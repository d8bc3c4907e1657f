import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UUIDPrimaryKey


class Item(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "items"
    # Serves "my items, newest first" (the hot list query) and the foreign key's cascade.
    __table_args__ = (Index("ix_items_owner_id_created_at", "owner_id", "created_at"),)

    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    # The database deletes a user's items with the user; no ORM relationship is needed for that,
    # and none means no lazy load to forget.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Optimistic locking, and the item's ETag (`"<version>"`): every write says
    # `WHERE version = <the version it read>` (or the one `If-Match` names), so a change made
    # meanwhile is refused instead of silently overwritten.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declaration

    def __repr__(self) -> str:
        return f"Item(id={self.id!s}, title={self.title!r})"
