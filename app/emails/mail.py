"""The emails this feature composes itself."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.emails.service import TEST_EMAIL, Composed, Composer


async def _test_email(
    _session: AsyncSession, settings: Settings, recipient: str, _payload: dict[str, Any]
) -> Composed:
    return Composed(
        recipient=recipient,
        subject=f"{settings.PROJECT_NAME} - Test email",
        template="test_email",
        context={"email": recipient},
    )


COMPOSERS: dict[str, Composer] = {TEST_EMAIL: _test_email}
