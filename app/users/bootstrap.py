"""Start-up work of the users feature: the first superuser."""

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.security import get_passwords
from app.users import service
from app.users.errors import EmailAlreadyRegistered

log = structlog.get_logger(__name__)


async def create_first_superuser(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Create `FIRST_SUPERUSER` unless it exists; safe when many instances start at once."""
    async with sessionmaker() as session:
        try:
            created = await service.ensure_superuser(
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
