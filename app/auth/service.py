"""Password recovery: the request, the email's link, and the reset it leads to.

The request only queues an email (one INSERT, whether or not the address is registered), so its
answer and its timing say nothing about which addresses exist. The sender composes the email
later: it looks the account up, and only a registered, active one gets a link. The link's token
is made then and never stored; it carries the fingerprint of the password it replaces, so it
works once, and not after any later password change.
"""

import hmac
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import InactiveUserLogin, InvalidResetToken
from app.core.config import Settings
from app.core.security import (
    InvalidTokenError,
    Passwords,
    create_reset_token,
    credential_fingerprint,
    decode_reset_token,
)
from app.emails import service as emails_service
from app.emails.service import Composed
from app.users import service as users_service

PASSWORD_RECOVERY_EMAIL = "auth.password_recovery"  # noqa: S105 - an email kind


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
