"""The emails the auth feature sends."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import PASSWORD_RECOVERY_EMAIL, compose_recovery
from app.core.config import Settings
from app.emails.service import Composed, Composer


async def _password_recovery(
    session: AsyncSession, settings: Settings, recipient: str, _payload: dict[str, Any]
) -> Composed | None:
    return await compose_recovery(session, settings, recipient)


COMPOSERS: dict[str, Composer] = {PASSWORD_RECOVERY_EMAIL: _password_recovery}
