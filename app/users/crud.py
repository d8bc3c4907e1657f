"""Database access for users. Flushes, never commits; raises domain errors, never HTTP ones."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.errors import EmailAlreadyRegistered
from app.users.models import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, or None."""
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this (lower-cased) email, or None."""
    return await session.scalar(select(User).where(User.email == email.lower()))


async def list_page(session: AsyncSession, *, skip: int, limit: int) -> tuple[Sequence[User], int]:
    """One page of users, newest first, and the total count."""
    count = await session.scalar(select(func.count()).select_from(User))
    users = await session.scalars(
        select(User).order_by(User.created_at.desc(), User.id.desc()).offset(skip).limit(limit)
    )
    return users.all(), count or 0


async def _flush_unique_email(session: AsyncSession) -> None:
    # The unique index decides, in one round trip and without a check-then-insert race.
    try:
        await session.flush()
    except IntegrityError as error:
        raise EmailAlreadyRegistered() from error


async def create(
    session: AsyncSession,
    *,
    email: str,
    hashed_password: str,
    full_name: str | None = None,
    is_active: bool = True,
    is_superuser: bool = False,
) -> User:
    """Insert a user; EmailAlreadyRegistered when the email is taken."""
    user = User(
        email=email.lower(),
        hashed_password=hashed_password,
        full_name=full_name,
        is_active=is_active,
        is_superuser=is_superuser,
    )
    session.add(user)
    await _flush_unique_email(session)
    return user


async def update(session: AsyncSession, user: User, *, changes: dict[str, Any]) -> User:
    """Apply column changes; EmailAlreadyRegistered when the new email is taken."""
    for field, value in changes.items():
        setattr(user, field, value)
    await _flush_unique_email(session)
    return user


async def delete(session: AsyncSession, user: User) -> None:
    """Delete a user; the database cascades to everything they own."""
    await session.delete(user)
    await session.flush()
