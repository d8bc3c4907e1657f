"""What every feature's factories share: build with factory-boy, persist through AsyncSession.

factory-boy's SQLAlchemy integration is synchronous (MissingGreenlet under AsyncSession), so our
factories only build objects; `persist` adds and flushes them in the test's transaction.
"""

from typing import Any, TypeVar

from factory.base import Factory
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


class AsyncFactory(Factory[T]):
    class Meta:
        abstract = True

    @classmethod
    async def persist(cls, session: AsyncSession, **kwargs: Any) -> T:
        obj = cls.build(**kwargs)
        session.add(obj)
        await session.flush()
        return obj

    @classmethod
    async def persist_batch(cls, session: AsyncSession, size: int, **kwargs: Any) -> list[T]:
        objs = cls.build_batch(size, **kwargs)
        session.add_all(objs)
        await session.flush()
        return objs
