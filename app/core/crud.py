"""Database access every feature shares. Flushes, never commits: the request's unit of work does."""

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Base

Model = TypeVar("Model", bound=Base)


async def update(session: AsyncSession, obj: Model, *, changes: Mapping[str, Any]) -> Model:
    """Set these column values and flush, so constraint violations surface here."""
    for field, value in changes.items():
        setattr(obj, field, value)
    await session.flush()
    return obj


async def delete(session: AsyncSession, obj: Base) -> None:
    """Delete a row; the database cascades to what references it."""
    await session.delete(obj)
    await session.flush()
