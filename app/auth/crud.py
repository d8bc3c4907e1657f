"""Database access for refresh tokens. Flushes, never commits."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import RefreshToken


async def add_refresh_token(
    session: AsyncSession, *, session_id: uuid.UUID, token_hash: str, expires_at: datetime
) -> RefreshToken:
    token = RefreshToken(session_id=session_id, token_hash=token_hash, expires_at=expires_at)
    session.add(token)
    await session.flush()
    return token


async def find_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


async def rotate(session: AsyncSession, token_id: uuid.UUID, *, now: datetime) -> bool:
    """Mark the token used, if nobody did first: of two concurrent refreshes with one token,
    exactly one gets True (the UPDATE's WHERE decides, on PostgreSQL and SQLite alike)."""
    result = await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]
