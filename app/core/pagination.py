"""The list parameters every collection shares: `skip` >= 0, 1 <= `limit` <= 100."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query


@dataclass(frozen=True)
class Page:
    skip: int
    limit: int


def _page(
    skip: Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows to return")] = 100,
) -> Page:
    return Page(skip=skip, limit=limit)


PageDep = Annotated[Page, Depends(_page)]
