"""items: an index covering the list's sort key, and exact per-owner counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 21:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Triggers keep `item_counts` equal to the rows of `items`, in the writing transaction, for every
# write whatever makes it (the API, ON DELETE CASCADE from users, factories, bulk SQL). The upsert
# adds a row for an owner's first item; a delete only decrements (the user's own deletion cascades
# to their count row too, and must not bring it back).
#
# PostgreSQL: one statement-level trigger per INSERT/DELETE, over the statement's transition
# table. Row-level, a bulk insert of a million items would update one count row a million times
# in one transaction (a million row versions, each found through the previous ones).
_POSTGRESQL_UP = [
    """
    CREATE OR REPLACE FUNCTION item_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO item_counts (owner_id, count)
        SELECT owner_id, count(*) FROM added_items GROUP BY owner_id ORDER BY owner_id
        ON CONFLICT (owner_id) DO UPDATE SET count = item_counts.count + EXCLUDED.count;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION item_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE item_counts SET count = item_counts.count - removed.n
        FROM (SELECT owner_id, count(*) AS n FROM removed_items GROUP BY owner_id) AS removed
        WHERE item_counts.owner_id = removed.owner_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION item_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE item_counts SET count = count - 1 WHERE owner_id = OLD.owner_id;
        INSERT INTO item_counts (owner_id, count) VALUES (NEW.owner_id, 1)
        ON CONFLICT (owner_id) DO UPDATE SET count = item_counts.count + 1;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER items_count_insert AFTER INSERT ON items
    REFERENCING NEW TABLE AS added_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_add()
    """,
    """
    CREATE TRIGGER items_count_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS removed_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_remove()
    """,
    # No route moves an item to another owner; if something ever does, the counts follow. The
    # WHEN makes it free for every other update.
    """
    CREATE TRIGGER items_count_move AFTER UPDATE OF owner_id ON items
    FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION item_counts_move()
    """,
]
_POSTGRESQL_DOWN = [
    "DROP TRIGGER IF EXISTS items_count_move ON items",
    "DROP TRIGGER IF EXISTS items_count_delete ON items",
    "DROP TRIGGER IF EXISTS items_count_insert ON items",
    "DROP FUNCTION IF EXISTS item_counts_move()",
    "DROP FUNCTION IF EXISTS item_counts_remove()",
    "DROP FUNCTION IF EXISTS item_counts_add()",
]

# SQLite has row-level triggers only; it updates the count row in place.
_SQLITE_UP = [
    """
    CREATE TRIGGER items_count_insert AFTER INSERT ON items BEGIN
        INSERT INTO item_counts (owner_id, count) VALUES (NEW.owner_id, 1)
        ON CONFLICT (owner_id) DO UPDATE SET count = item_counts.count + 1;
    END
    """,
    """
    CREATE TRIGGER items_count_delete AFTER DELETE ON items BEGIN
        UPDATE item_counts SET count = count - 1 WHERE owner_id = OLD.owner_id;
    END
    """,
    """
    CREATE TRIGGER items_count_move AFTER UPDATE OF owner_id ON items
    WHEN OLD.owner_id IS NOT NEW.owner_id BEGIN
        UPDATE item_counts SET count = count - 1 WHERE owner_id = OLD.owner_id;
        INSERT INTO item_counts (owner_id, count) VALUES (NEW.owner_id, 1)
        ON CONFLICT (owner_id) DO UPDATE SET count = item_counts.count + 1;
    END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS items_count_move",
    "DROP TRIGGER IF EXISTS items_count_delete",
    "DROP TRIGGER IF EXISTS items_count_insert",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    # The sort key is (created_at, id): indexes that cover it whole, so a page is an index range
    # with a LIMIT and no sort, at any depth.
    op.drop_index("ix_items_owner_id_created_at", table_name="items")
    op.create_index("ix_items_owner_id_created_at_id", "items", ["owner_id", "created_at", "id"])
    op.drop_index("ix_items_created_at", table_name="items")
    op.create_index("ix_items_created_at_id", "items", ["created_at", "id"])

    op.create_table(
        "item_counts",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_item_counts_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_item_counts")),
    )
    # Triggers first, then the backfill: on PostgreSQL creating a trigger locks `items` against
    # writes until this migration commits, so no item is counted twice or missed.
    _run(_SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL_UP)
    op.execute(
        "INSERT INTO item_counts (owner_id, count) "
        "SELECT owner_id, count(*) FROM items GROUP BY owner_id"
    )


def downgrade() -> None:
    _run(_SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL_DOWN)
    op.drop_table("item_counts")
    op.drop_index("ix_items_created_at_id", table_name="items")
    op.create_index("ix_items_created_at", "items", ["created_at"])
    op.drop_index("ix_items_owner_id_created_at_id", table_name="items")
    op.create_index("ix_items_owner_id_created_at", "items", ["owner_id", "created_at"])
