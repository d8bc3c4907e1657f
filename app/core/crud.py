"""Database access every feature shares. Flushes, never commits: the request's unit of work does."""

from collections.abc import Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import Base
from app.core.errors import AppError, ConcurrentUpdate, NotFound

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


# Writes of a row with a version (`version_id_col`), the version behind its ETag. Each is one
# compare-and-set statement: `WHERE id = ... AND version = <the version the request read>`. Two
# requests that read the same version cannot both write (on PostgreSQL the second waits for the
# first's row lock, then finds the version changed, or the row gone); a change made after the
# request read the row is refused, never silently overwritten. When the statement matches no row,
# one more query tells which: ConcurrentUpdate(current version) or `gone` (deleted meanwhile).


def _versioned(model: type[Base]) -> tuple[Mapper[Any], sa.ColumnElement[Any], Any]:
    mapper: Mapper[Any] = sa.inspect(model)
    if mapper.version_id_col is None:
        raise TypeError(f"{model.__name__} has no version_id_col")
    (primary_key,) = mapper.primary_key
    return mapper, primary_key, mapper.version_id_col


def _matching(model: type[Base], obj: Base, *, any_version: bool) -> list[sa.ColumnElement[bool]]:
    mapper, primary_key, version = _versioned(model)
    (identity,) = mapper.primary_key_from_instance(obj)
    criteria = [primary_key == identity]
    if not any_version:
        criteria.append(version == getattr(obj, mapper.get_property_by_column(version).key))
    return criteria


async def _refused(session: AsyncSession, obj: Base, gone: type[AppError]) -> AppError:
    """Why a compare-and-set matched no row: changed (ConcurrentUpdate) or deleted (`gone`)."""
    mapper, primary_key, version = _versioned(type(obj))
    (identity,) = mapper.primary_key_from_instance(obj)
    current = await session.scalar(sa.select(version).where(primary_key == identity))
    return gone() if current is None else ConcurrentUpdate(current)


async def update_versioned(
    session: AsyncSession,
    obj: Model,
    *,
    changes: Mapping[str, Any],
    any_version: bool = False,
    gone: type[AppError] = NotFound,
) -> Model:
    """Set these column values and bump the version, only if the row still has the version `obj`
    was read at (`any_version`: whatever its version, if it exists). Changes to the values it has
    already write nothing. ConcurrentUpdate or `gone` when the row changed or was deleted."""
    model = type(obj)
    mapper, _, version = _versioned(model)
    version_key = mapper.get_property_by_column(version).key
    changed = {field: value for field, value in changes.items() if getattr(obj, field) != value}
    if not changed:
        return obj
    new_version = await session.scalar(
        sa.update(model)
        .where(*_matching(model, obj, any_version=any_version))
        .values(**changed, **{version_key: version + 1})
        .returning(version)
        .execution_options(synchronize_session=False)
    )
    if new_version is None:
        raise await _refused(session, obj, gone)
    for field, value in changed.items():
        set_committed_value(obj, field, value)
    set_committed_value(obj, version_key, new_version)
    return obj


async def delete_versioned(
    session: AsyncSession,
    obj: Base,
    *,
    any_version: bool = False,
    gone: type[AppError] = NotFound,
) -> None:
    """Delete the row (the database cascades) only if it still has the version `obj` was read at
    (`any_version`: whatever its version). Of two concurrent deletes one succeeds and the other
    gets `gone`; ConcurrentUpdate when the row was changed meanwhile."""
    model = type(obj)
    result = await session.execute(
        sa.delete(model)
        .where(*_matching(model, obj, any_version=any_version))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise await _refused(session, obj, gone)
    session.expunge(obj)
