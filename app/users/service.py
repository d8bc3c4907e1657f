"""Operations on users that need more than SQL: password hashing and the rules around it.

Every hash or verification runs with the database connection released (`release_connection`).
"""

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import release_connection
from app.core.security import Passwords, get_passwords
from app.emails import service as emails_service
from app.users import crud
from app.users.errors import (
    CannotChangeSelf,
    EmailAlreadyRegistered,
    IncorrectPassword,
    PasswordUnchanged,
)
from app.users.models import User, UserSession
from app.users.schemas import UserCreate, UserUpdate, UserUpdateMe

log = structlog.get_logger(__name__)


# The kinds of email this feature queues; composed in users/mail.py.
NEW_ACCOUNT_EMAIL = "users.new_account"


async def find(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, or None."""
    return await crud.get(session, user_id)


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email (any case), or None."""
    return None if "\x00" in email else await crud.get_by_email(session, email)


async def hash_password(session: AsyncSession, passwords: Passwords, password: str) -> str:
    """Hash a new password with the connection released: before the request writes anything."""
    await release_connection(session)
    return await passwords.hash(password)


async def create(
    session: AsyncSession,
    passwords: Passwords,
    *,
    user_in: UserCreate,
    welcome: bool = False,
    hashed_password: str | None = None,
) -> User:
    """Create an account with a freshly hashed password (or `hashed_password`, from
    `hash_password`, for a caller that writes between hashing and creating); `welcome` queues the
    new-account email in the same transaction."""
    if hashed_password is None:
        hashed_password = await hash_password(session, passwords, user_in.password)
    user = await crud.create(
        session,
        email=user_in.email,
        hashed_password=hashed_password,
        full_name=user_in.full_name,
        is_active=user_in.is_active,
        is_superuser=user_in.is_superuser,
    )
    if welcome:
        await emails_service.enqueue(session, kind=NEW_ACCOUNT_EMAIL, recipient=user.email)
    return user


async def authenticate(
    session: AsyncSession, passwords: Passwords, *, email: str, password: str
) -> User | None:
    """The user these credentials belong to, or None.

    Unknown emails cost one password verification too, so response time does not reveal which
    emails are registered. An outdated hash (bcrypt, weaker argon2) is replaced on success.
    HashingBusy when too many logins already wait for their turn to be checked.
    """
    # Logins take turns on their share of the hashing threads, or are refused at once when
    # HASH_QUEUE_MAX wait already: before the lookup, so a refused login costs no query either.
    async with passwords.login_turn():
        # No address holds NUL, and PostgreSQL refuses it in a query parameter.
        user = await find_by_email(session, email)
        await release_connection(session)
        if user is None:
            await passwords.waste_time(password)
            return None
        valid, new_hash = await passwords.verify_and_update(password, user.hashed_password)
    if not valid:
        return None
    if new_hash is not None:
        await crud.update(session, user, changes={"hashed_password": new_hash})
    return user


async def start_session(session: AsyncSession, user: User) -> UserSession:
    """A new signed-in session of this user (what access tokens carry as `sid`)."""
    return await crud.create_session(session, user_id=user.id)


async def find_session(session: AsyncSession, session_id: uuid.UUID) -> UserSession | None:
    return await crud.get_session(session, session_id)


async def end_session(
    session: AsyncSession, user: User, session_id: uuid.UUID, *, reason: str = "logout"
) -> None:
    """End one session: its access tokens and refresh tokens stop working."""
    await crud.end_sessions(session, user_id=user.id, session_id=session_id, reason=reason)
    log.info("auth.session_ended", user_id=str(user.id), session_id=str(session_id), reason=reason)


async def end_all_sessions(session: AsyncSession, user: User, *, reason: str) -> None:
    """End every session of this user (logout everywhere, password change, deactivation...)."""
    ended = await crud.end_sessions(session, user_id=user.id, reason=reason)
    log.info("auth.sessions_ended", user_id=str(user.id), reason=reason, sessions=ended)


async def update_me(
    session: AsyncSession, user: User, *, user_in: UserUpdateMe, any_version: bool = False
) -> User:
    changes = user_in.model_dump(exclude_unset=True)
    return await crud.update(session, user, changes=changes, any_version=any_version)


async def update(
    session: AsyncSession,
    passwords: Passwords,
    user: User,
    *,
    user_in: UserUpdate,
    acting_user: User,
    any_version: bool = False,
) -> User:
    """A superuser's update of any account, including their own; only if it is still at the
    version `user` was read at (`any_version`: at any version)."""
    changes: dict[str, Any] = user_in.model_dump(exclude_unset=True, exclude={"confirm_password"})
    if user.id == acting_user.id and (
        changes.get("is_superuser") is False or changes.get("is_active") is False
    ):
        raise CannotChangeSelf("Superusers may not deactivate or demote themselves")
    if "password" in changes:
        await release_connection(session)
        changes["hashed_password"] = await passwords.hash(changes.pop("password"))
    # What ends every session of the account: a new password, deactivation, demotion.
    reasons = [
        reason
        for reason, applies in (
            ("password-set", "hashed_password" in changes),
            ("deactivated", user.is_active and changes.get("is_active") is False),
            ("demoted", user.is_superuser and changes.get("is_superuser") is False),
        )
        if applies
    ]
    for field in ("is_active", "is_superuser"):
        if field in changes and changes[field] != getattr(user, field):
            log.info(
                "user.role_changed",
                user_id=str(user.id),
                by=str(acting_user.id),
                field=field,
                value=changes[field],
            )
    updated = await crud.update(session, user, changes=changes, any_version=any_version)
    if reasons:
        await end_all_sessions(session, user, reason=",".join(reasons))
    return updated


async def change_password(
    session: AsyncSession,
    passwords: Passwords,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> None:
    await release_connection(session)
    if not await passwords.verify(current_password, user.hashed_password):
        raise IncorrectPassword()
    if current_password == new_password:
        raise PasswordUnchanged()
    if not await set_password(session, passwords, user, new_password=new_password):
        # Changed by a concurrent request since we checked it: the current password is not.
        raise IncorrectPassword()
    log.info("user.password_changed", user_id=str(user.id))


async def set_password(
    session: AsyncSession, passwords: Passwords, user: User, *, new_password: str
) -> bool:
    """Hash and store a new password, unless the stored one changed since `user` was read
    (then False, and nothing changes). Ends every session opened with the old password."""
    old_hash = user.hashed_password
    await release_connection(session)
    new_hash = await passwords.hash(new_password)
    if not await crud.replace_password(session, user, old_hash=old_hash, new_hash=new_hash):
        return False
    await end_all_sessions(session, user, reason="password-set")
    return True


async def delete(
    session: AsyncSession, user: User, *, acting_user: User, any_version: bool = False
) -> None:
    """Delete an account if it is still at the version `user` was read at (`any_version`: at
    any version); UserNotFound when a concurrent request deleted it first."""
    if user.id == acting_user.id and user.is_superuser:
        raise CannotChangeSelf("Superusers may not delete themselves")
    await crud.delete(session, user, any_version=any_version)


async def ensure_superuser(
    session: AsyncSession, passwords: Passwords, *, email: str, password: str
) -> bool:
    """Create the first superuser unless that email exists; True when it was created."""
    if await crud.get_by_email(session, email) is not None:
        return False
    await release_connection(session)
    await crud.create(
        session,
        email=email,
        hashed_password=await passwords.hash(password),
        is_superuser=True,
    )
    return True


async def create_first_superuser(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Create `FIRST_SUPERUSER` unless it exists; safe when many instances start at once."""
    async with sessionmaker() as session:
        try:
            created = await ensure_superuser(
                session,
                get_passwords(settings),
                email=settings.FIRST_SUPERUSER,
                password=settings.FIRST_SUPERUSER_PASSWORD,
            )
            await session.commit()
        except EmailAlreadyRegistered:
            # Another instance created it between our check and our insert.
            await session.rollback()
            created = False
    if created:
        log.info("user.first_superuser_created", email=settings.FIRST_SUPERUSER)
