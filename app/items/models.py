import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, CreatedAt, UTCDateTime, UUIDPrimaryKey, utcnow


class Item(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "items"
    # The list's sort key is `(created_at, id)`, newest first. An index that covers all of it lets
    # the database read a page (the first, or the one after a cursor) as one index range with a
    # LIMIT and no sort; PostgreSQL and SQLite walk it backwards for DESC. The first serves "my
    # items" (and the foreign key's cascade), the second a superuser's everyone's.
    __table_args__ = (
        # The page's other columns ride along (PostgreSQL): an owner's page is an index-only
        # scan, which the planner prefers even for an owner holding most of the table.
        Index(
            "ix_items_owner_id_created_at_id",
            "owner_id",
            "created_at",
            "id",
            postgresql_include=["title", "description", "version"],
        ),
        Index("ix_items_created_at_id", "created_at", "id"),
    )

    # The mixin's column without its own index: `ix_items_created_at_id` serves its queries.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
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


class ItemCount(Base):
    """How many items each user owns: the list's `count` without counting a million rows.

    Kept exact by database triggers on `items` (migration 0007), in the transaction of the write
    that changes the items, whatever makes it: the API, a cascade from deleting the user, a
    factory, a bulk `INSERT ... SELECT`. Nothing in the app writes this table. No row: 0 items.
    """

    __tablename__ = "item_counts"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    count: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"ItemCount(owner_id={self.owner_id!s}, count={self.count})"
