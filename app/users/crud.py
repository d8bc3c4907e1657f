"""Database access for users. Flushes, never commits; raises domain errors, never HTTP ones."""

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core import crud as core_crud
from app.core.db import utcnow
from app.core.pagination import PageParams, Rows, paginate
from app.users.errors import EmailAlreadyRegistered, UserNotFound
from app.users.models import User, UserSession


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, or None."""
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this (lower-cased) email, or None."""
    return await session.scalar(select(User).where(User.email == email.lower()))


async def list_page(session: AsyncSession, *, page: PageParams) -> Rows[User]:
    """One page of users, newest first, and the total count."""
    # Users are few next to items: an exact COUNT over them is cheap enough.
    return await paginate(session, _USERS, page, keys=(User.created_at, User.id))


_USERS = select(User)


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
    # The unique index decides, in one round trip and without a check-then-insert race.
    with _email_taken_is_a_conflict():
        await session.flush()
    return user


async def update(
    session: AsyncSession, user: User, *, changes: Mapping[str, Any], any_version: bool = False
) -> User:
    """Apply column changes if the account is still at the version `user` was read at (any
    version: `any_version`); EmailAlreadyRegistered when the new email is taken,
    ConcurrentUpdate or UserNotFound when it changed or was deleted meanwhile."""
    with _email_taken_is_a_conflict():
        return await core_crud.update_versioned(
            session, user, changes=changes, any_version=any_version, gone=UserNotFound
        )


async def delete(session: AsyncSession, user: User, *, any_version: bool = False) -> None:
    """Delete the account (the database deletes what it owns) if it is still at the version
    `user` was read at; of concurrent deletes, one succeeds and the others get UserNotFound."""
    await core_crud.delete_versioned(session, user, any_version=any_version, gone=UserNotFound)


async def replace_password(
    session: AsyncSession, user: User, *, old_hash: str, new_hash: str
) -> bool:
    """Set a new password hash only if the stored one is still `old_hash`; False otherwise.

    Compare-and-set in one statement: of two concurrent password changes (or uses of one reset
    link) exactly one succeeds, instead of both answering 200 and one being lost.
    """
    version = await session.scalar(
        sa.update(User)
        .where(User.id == user.id, User.hashed_password == old_hash)
        .values(hashed_password=new_hash, version=User.version + 1)
        .returning(User.version)
        .execution_options(synchronize_session=False)
    )
    if version is None:
        return False
    set_committed_value(user, "hashed_password", new_hash)
    set_committed_value(user, "version", version)
    return True


async def get_in_session(
    session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[User, datetime | None] | None:
    """The user and when their session `session_id` ended (None: it is open), in one query;
    None when either does not exist or the session is someone else's."""
    parameters = {"user_id": user_id, "session_id": session_id}
    row = (await session.execute(_USER_IN_SESSION, parameters)).first()
    return None if row is None else (row[0], row[1])


# Built once: this runs on every authenticated request, and building the statement cost more
# than SQLAlchemy's compiled-statement cache then saves.
_USER_IN_SESSION = (
    select(User, UserSession.ended_at)
    .join(
        UserSession,
        (UserSession.user_id == User.id) & (UserSession.id == sa.bindparam("session_id")),
    )
    .where(User.id == sa.bindparam("user_id"))
)


async def create_session(session: AsyncSession, *, user_id: uuid.UUID) -> UserSession:
    """Open a session for this user."""
    user_session = UserSession(user_id=user_id)
    session.add(user_session)
    await session.flush()
    return user_session


async def get_session(session: AsyncSession, session_id: uuid.UUID) -> UserSession | None:
    return await session.get(UserSession, session_id)


async def end_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    reason: str,
    session_id: uuid.UUID | None = None,
) -> int:
    """End one open session of the user (`session_id`) or all of them; how many ended."""
    query = (
        sa.update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=utcnow(), ended_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if session_id is not None:
        query = query.where(UserSession.id == session_id)
    result = await session.execute(query)
    return int(result.rowcount)  # type: ignore[attr-defined]


@contextmanager
def _email_taken_is_a_conflict() -> Iterator[None]:
    try:
        yield
    except IntegrityError as error:
        raise EmailAlreadyRegistered() from error
