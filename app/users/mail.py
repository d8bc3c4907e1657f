"""The emails the users feature sends."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.emails.service import Composed, Composer
from app.users import crud
from app.users.service import NEW_ACCOUNT_EMAIL


async def _new_account(
    session: AsyncSession, settings: Settings, recipient: str, _payload: dict[str, Any]
) -> Composed | None:
    user = await crud.get_by_email(session, recipient)
    if user is None:
        return None  # deleted before the email went out
    # No password in it, unlike the full-stack template's: the outbox would store it in clear.
    return Composed(
        recipient=user.email,
        subject=f"{settings.PROJECT_NAME} - New account for user {user.email}",
        template="new_account",
        context={"username": user.email, "link": settings.FRONTEND_HOST},
    )


COMPOSERS: dict[str, Composer] = {NEW_ACCOUNT_EMAIL: _new_account}
