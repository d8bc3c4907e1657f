"""Database access for one-time login codes. Flushes, never commits."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.oidc.models import OidcLoginCode


async def add_code(
    session: AsyncSession, *, user_id: uuid.UUID, code_hash: str, expires_at: datetime
) -> OidcLoginCode:
    code = OidcLoginCode(user_id=user_id, code_hash=code_hash, expires_at=expires_at)
    session.add(code)
    await session.flush()
    return code


async def use_code(session: AsyncSession, code_hash: str, *, now: datetime) -> uuid.UUID | None:
    """Mark an unused, unexpired code used and return its user id; None for any other code.

    Compare-and-set in one statement: of two exchanges of one code, exactly one gets the user.
    """
    result = await session.execute(
        sa.update(OidcLoginCode)
        .where(
            OidcLoginCode.code_hash == code_hash,
            OidcLoginCode.used_at.is_(None),
            OidcLoginCode.expires_at > now,
        )
        .values(used_at=now)
        .returning(OidcLoginCode.user_id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def delete_expired(session: AsyncSession, *, now: datetime) -> None:
    """Forget codes that can no longer be used (each is refused the same as an unknown one)."""
    await session.execute(
        sa.delete(OidcLoginCode)
        .where(OidcLoginCode.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
