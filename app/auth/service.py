"""Sessions and their tokens, and password recovery.

Signing in opens a session (`users.service.start_session`) and issues a pair: a short access
token naming the session (`sid`), and an opaque refresh token stored only as a hash. A refresh
rotates the pair; presenting a rotated refresh token again is taken as theft and ends the session.

Password recovery: the request, the email's link, and the reset it leads to.

The request only queues an email (one INSERT, whether or not the address is registered), so its
answer and its timing say nothing about which addresses exist. The sender composes the email
later: it looks the account up, and only a registered, active one gets a link. The link's token
is made then and never stored; it carries the fingerprint of the password it replaces, so it
works once, and not after any later password change.
"""

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import crud
from app.auth.errors import InactiveUserLogin, InvalidRefreshToken, InvalidResetToken
from app.core.config import Settings
from app.core.db import utcnow
from app.core.security import (
    InvalidTokenError,
    Passwords,
    create_access_token,
    create_reset_token,
    credential_fingerprint,
    decode_reset_token,
    hash_refresh_token,
    new_refresh_token,
)
from app.emails import service as emails_service
from app.emails.service import Composed
from app.users import service as users_service
from app.users.models import User

log = structlog.get_logger(__name__)

PASSWORD_RECOVERY_EMAIL = "auth.password_recovery"  # noqa: S105 - an email kind


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: uuid.UUID


async def open_session(session: AsyncSession, settings: Settings, user: User) -> TokenPair:
    """Sign `user` in: a new session and its first token pair."""
    user_session = await users_service.start_session(session, user)
    log.info("auth.login_succeeded", user_id=str(user.id), session_id=str(user_session.id))
    return await _issue(session, settings, user, user_session.id)


async def _issue(
    session: AsyncSession, settings: Settings, user: User, session_id: uuid.UUID
) -> TokenPair:
    access = create_access_token(
        str(user.id),
        settings,
        credential=credential_fingerprint(user.hashed_password, settings),
        session_id=str(session_id),
    )
    refresh, refresh_hash = new_refresh_token()
    await crud.add_refresh_token(
        session,
        session_id=session_id,
        token_hash=refresh_hash,
        expires_at=utcnow() + timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
    )
    return TokenPair(
        access_token=access.token,
        expires_in=access.expires_in,
        refresh_token=refresh,
        session_id=session_id,
    )


async def session_of_refresh_token(session: AsyncSession, token: str) -> uuid.UUID | None:
    """The session a refresh token belongs to (to throttle refreshes per session), if any."""
    stored = await crud.find_refresh_token(session, hash_refresh_token(token))
    return None if stored is None else stored.session_id


async def refresh(session: AsyncSession, settings: Settings, *, token: str) -> TokenPair:
    """Exchange a refresh token for a new pair in the same session; the old one stops working.

    InvalidRefreshToken for an unknown, expired or used token, an ended session or an inactive
    user. A token that was already exchanged is presented again only by whoever copied it, so
    the whole session (every token of its family) ends.
    """
    stored = await crud.find_refresh_token(session, hash_refresh_token(token))
    if stored is None:
        raise InvalidRefreshToken()
    user_session = await users_service.find_session(session, stored.session_id)
    user = None if user_session is None else await users_service.find(session, user_session.user_id)
    if user_session is None or user is None or user_session.ended_at is not None:
        raise InvalidRefreshToken("The session has ended: log in again")
    now = utcnow()
    if stored.rotated_at is not None:
        if now - stored.rotated_at <= timedelta(seconds=settings.REFRESH_REUSE_GRACE_SECONDS):
            # Two requests of one client raced with one token, and the other won just now.
            raise InvalidRefreshToken("This refresh token was already used")
        await users_service.end_session(session, user, user_session.id, reason="refresh-reuse")
        log.warning(
            "auth.refresh_reuse",
            user_id=str(user.id),
            session_id=str(user_session.id),
            rotated_at=stored.rotated_at.isoformat(),
        )
        # The 401 below rolls the request back: the revocation must be stored first.
        await session.commit()
        raise InvalidRefreshToken("This refresh token was already used: the session has ended")
    if stored.expires_at <= now:
        raise InvalidRefreshToken("The refresh token has expired: log in again")
    if not user.is_active:
        raise InvalidRefreshToken("Inactive user")
    if not await crud.rotate(session, stored.id, now=now):
        # A concurrent refresh with this token won: one new pair per token, no theft alarm.
        raise InvalidRefreshToken("This refresh token was already used")
    return await _issue(session, settings, user, user_session.id)


async def request_recovery(session: AsyncSession, *, email: str) -> None:
    await emails_service.enqueue(session, kind=PASSWORD_RECOVERY_EMAIL, recipient=email)


async def compose_recovery(
    session: AsyncSession, settings: Settings, email: str
) -> Composed | None:
    """The recovery email for this address, with a fresh link; None unless it is the address of
    an active account."""
    user = await users_service.find_by_email(session, email)
    if user is None or not user.is_active:
        return None
    token = create_reset_token(
        str(user.id), settings, credential=credential_fingerprint(user.hashed_password, settings)
    )
    return Composed(
        recipient=user.email,
        subject=f"{settings.PROJECT_NAME} - Password recovery for user {user.email}",
        template="password_recovery",
        context={
            "username": user.email,
            "link": f"{settings.FRONTEND_HOST}/reset-password?token={token}",
            "valid_hours": settings.EMAIL_RESET_TOKEN_EXPIRE_HOURS,
        },
    )


async def reset_password(
    session: AsyncSession,
    passwords: Passwords,
    settings: Settings,
    *,
    token: str,
    new_password: str,
) -> None:
    """Set the password the token was issued for; InvalidResetToken when it is malformed,
    expired, already used, or its password changed since."""
    try:
        claims = decode_reset_token(token, settings)
        user_id = uuid.UUID(claims.subject)
    except (InvalidTokenError, ValueError) as error:
        raise InvalidResetToken() from error
    user = await users_service.find(session, user_id)
    if user is None or not hmac.compare_digest(
        claims.credential, credential_fingerprint(user.hashed_password, settings)
    ):
        raise InvalidResetToken()
    if not user.is_active:
        raise InactiveUserLogin()
    # Compare-and-set: of two uses of one link at the same moment, one wins, one is refused.
    if not await users_service.set_password(session, passwords, user, new_password=new_password):
        raise InvalidResetToken()
    log.info("auth.password_reset", user_id=str(user.id))
