"""Database access for idempotency keys. Flushes, never commits."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyKey


async def claim(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    scope: str,
    key: str,
    fingerprint: str,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Insert the key, or take over an expired one; False when a live one exists.

    One statement, `INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired>`: on PostgreSQL, when
    another transaction has inserted the key and not yet committed, it waits on the unique index
    for that transaction to end (then finds its row, or inserts when it rolled back).
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    fresh = {
        "created_at": now,
        "fingerprint": fingerprint,
        "status_code": None,
        "body": None,
        "headers": None,
    }
    statement = (
        insert(IdempotencyKey)
        .values(id=uuid.uuid4(), user_id=user_id, scope=scope, key=key, **fresh)
        .on_conflict_do_update(
            index_elements=["user_id", "scope", "key"],
            set_=fresh,
            where=IdempotencyKey.created_at < expired_before,
        )
        .returning(IdempotencyKey.id)
    )
    return await session.scalar(statement) is not None


async def get(
    session: AsyncSession, *, user_id: uuid.UUID, scope: str, key: str
) -> IdempotencyKey | None:
    return await session.scalar(
        sa.select(IdempotencyKey)
        .where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
        .execution_options(populate_existing=True)
    )


async def complete(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    scope: str,
    key: str,
    status_code: int,
    body: str,
    headers: dict[str, str],
) -> None:
    """Store the answer of the request that claimed this key."""
    await session.execute(
        sa.update(IdempotencyKey)
        .where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
        .values(status_code=status_code, body=body, headers=headers)
        .execution_options(synchronize_session=False)
    )


async def delete_expired(session: AsyncSession, *, expired_before: datetime, limit: int) -> int:
    """Delete up to `limit` expired keys, oldest first (rows another request is deleting are
    skipped, not waited for); how many."""
    oldest = (
        sa.select(IdempotencyKey.id)
        .where(IdempotencyKey.created_at < expired_before)
        .order_by(IdempotencyKey.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        sa.delete(IdempotencyKey)
        .where(IdempotencyKey.id.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
