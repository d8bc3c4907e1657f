"""Collections, the same way in every feature: the `skip`/`limit` parameters, one generic page
body (`{"data": [...], "count": N}`), and the query helper that fills it."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class PageParams:
    skip: int
    limit: int


async def _page_params(
    skip: Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows to return")] = 100,
) -> PageParams:
    return PageParams(skip=skip, limit=limit)


PageDep = Annotated[PageParams, Depends(_page_params)]


@dataclass(frozen=True, slots=True)
class Rows(Generic[Row]):
    """What a crud `list_page` returns: one page of rows and the total count."""

    data: Sequence[Row]
    count: int


class Page(BaseModel, Generic[T]):
    """The response body of every collection. Subclass it to give the schema its own name
    (`class ItemsPublic(Page[ItemPublic])`), so generated clients get a readable type."""

    # Validated straight from `Rows` of ORM objects: `ItemsPublic.model_validate(rows)`.
    model_config = ConfigDict(from_attributes=True)

    data: list[T]
    count: int
    """The total number of rows, not only those on this page."""


async def paginate(session: AsyncSession, query: Select[Row], page: PageParams) -> Rows[Row]:
    """Run `query` (ordered, filtered) for one page, and count every row it matches."""
    # Counted over the query as a subquery, so joins and filters count the same rows they list.
    total = select(func.count()).select_from(query.order_by(None).subquery())
    count = await session.scalar(total)
    rows = await session.scalars(query.offset(page.skip).limit(page.limit))
    return Rows(data=rows.all(), count=count or 0)
