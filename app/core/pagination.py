"""Collections, the same way in every feature: the `skip`/`limit`/`cursor` parameters, one generic
page body (`{"data": [...], "count": N, "next_cursor": ...}`), and the query helper that fills it.

Two ways to page, newest first:
- `skip`: OFFSET, as the full-stack template's clients send it. The database still walks every
  skipped row, so a page 100,000 deep costs 100,000 rows.
- `cursor`: keyset. A cursor names the sort key of the last row a client has seen; the next page
  is `WHERE (created_at, id) < (:c, :i)`, one index range, as cheap at any depth. Every page (a
  `skip` one too) gives the cursor of its last row as `next_cursor`, null on the last page.

A cursor is opaque to clients but not a secret: it only says where to start, and the query it
continues is filtered as before (someone else's cursor shows you your own items only).
"""

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import AppError

T = TypeVar("T")
Row = TypeVar("Row")

# The cursor is base64url (unpadded) of `{"v": 1, "k": [[tag, value], ...]}`: the format's
# version, then each sort-key value tagged with its type. A new format gets a new version, and
# the decoder refuses versions it does not know (a 422, the client starts again from page one).
CURSOR_VERSION = 1
CURSOR_MAX_LENGTH = 1024


def _encode_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in a cursor; use an aware one")
    return value.isoformat()


def _decode_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value


# tag -> (type, to text, from text). `bool` is an `int` subclass: refused rather than read as 1.
_CODECS: dict[str, tuple[type, Callable[[Any], str], Callable[[str], Any]]] = {
    "t": (datetime, _encode_datetime, _decode_datetime),
    "u": (uuid.UUID, lambda value: value.hex, uuid.UUID),
    "i": (int, str, int),
    "s": (str, str, str),
}


def encode_cursor(*values: object) -> str:
    """The cursor that continues after a row whose sort key is `values` (for items:
    `encode_cursor(created_at, id)`, an aware datetime and a UUID)."""
    key: list[list[object]] = []
    for value in values:
        for tag, (kind, encode, _) in _CODECS.items():
            if isinstance(value, kind) and not isinstance(value, bool):
                key.append([tag, encode(value)])
                break
        else:
            raise TypeError(f"a cursor cannot hold a {type(value).__name__}")
    payload = json.dumps({"v": CURSOR_VERSION, "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[object, ...]:
    """The sort-key values `encode_cursor` was given; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error):  # JSON, UTF-8 and base64 errors all are ValueErrors
        raise ValueError("is not a cursor this API gave out") from None
    if not isinstance(payload, dict) or "v" not in payload:
        raise ValueError("is not a cursor this API gave out")
    if payload["v"] != CURSOR_VERSION:
        raise ValueError("is of a format this API no longer reads; start again from page one")
    key = payload.get("k")
    if not isinstance(key, list) or not key:
        raise ValueError("names no row")
    values: list[object] = []
    for part in key:
        if not (
            isinstance(part, list)
            and len(part) == 2
            and all(isinstance(field, str) for field in part)
            and part[0] in _CODECS
        ):
            raise ValueError("names no row")
        _, _, decode = _CODECS[part[0]]
        try:
            values.append(decode(part[1]))
        except ValueError:
            raise ValueError("names no row") from None
    return tuple(values)


class InvalidCursor(AppError):
    """A well-formed cursor that does not fit the list it was sent to (another list's, or
    hand-made)."""

    status_code = 422
    title = "Unprocessable Content"
    code = "invalid-cursor"
    detail = "The cursor does not belong to this list; start again from page one"


@dataclass(frozen=True, slots=True)
class PageParams:
    skip: int
    limit: int
    after: tuple[object, ...] | None = None
    """The sort key of the row the page starts after (from `cursor`); None: from `skip`."""


def _invalid_cursor(cursor: str, message: str) -> RequestValidationError:
    # Rendered like every other bad query parameter: a 422 whose `errors` name `query.cursor`.
    error = {"type": "value_error", "loc": ("query", "cursor"), "msg": message, "input": cursor}
    return RequestValidationError([error])


async def _page_params(
    skip: Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows to return")] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=CURSOR_MAX_LENGTH,
            description="Start after the row this cursor names: a page's `next_cursor`. "
            "Cheap at any depth, unlike `skip`; not combined with `skip`.",
        ),
    ] = None,
) -> PageParams:
    if cursor is None:
        return PageParams(skip=skip, limit=limit)
    if skip:
        raise _invalid_cursor(cursor, "cannot be combined with skip; send one or the other")
    try:
        after = decode_cursor(cursor)
    except ValueError as exc:
        raise _invalid_cursor(cursor, str(exc)) from None
    return PageParams(skip=0, limit=limit, after=after)


PageDep = Annotated[PageParams, Depends(_page_params)]


@dataclass(frozen=True, slots=True)
class Rows(Generic[Row]):
    """What a crud `list_page` returns: one page of rows, the total count, and the cursor of
    the page after it (None: this is the last)."""

    data: Sequence[Row]
    count: int
    next_cursor: str | None = None


class Page(BaseModel, Generic[T]):
    """The response body of every collection. Subclass it to give the schema its own name
    (`class ItemsPublic(Page[ItemPublic])`), so generated clients get a readable type."""

    # Validated straight from `Rows` of ORM objects: `ItemsPublic.model_validate(rows)`.
    model_config = ConfigDict(from_attributes=True)

    data: list[T]
    count: int
    """The total number of rows, not only those on this page."""
    next_cursor: str | None = None
    """Send it as `cursor` for the next page; null on the last page."""


Keys = tuple[InstrumentedAttribute[Any], ...]


def _checked(keys: Keys, values: tuple[object, ...]) -> tuple[object, ...]:
    """The cursor's values, when they fit the list's sort key; InvalidCursor otherwise."""
    kinds = [key.type.python_type for key in keys]
    if len(values) != len(keys) or not all(
        isinstance(value, kind) for value, kind in zip(values, kinds, strict=True)
    ):
        raise InvalidCursor()
    return values


_FIRST, _SKIP, _AFTER = "first", "skip", "after"


@lru_cache(maxsize=256)
def _page_statement(query: Select[Any], keys: Keys, kind: str) -> Select[Any]:
    """`query` ordered newest first by `keys`, limited to `:page_limit` rows, from the start, past
    `:page_skip` rows, or after the row whose sort key is `:after_0`, `:after_1`, ...

    Built once per query (cached): building a statement costs more than running a cached one,
    so `query` should be built once too (a module-level constant with bound parameters).
    `(k1, k2) < (:v1, :v2)` is one row comparison, which both SQLite and PostgreSQL turn into a
    range of an index on the keys.
    """
    ordered = query.order_by(*(key.desc() for key in keys))
    if kind == _AFTER:
        bound = [bindparam(f"after_{i}", type_=key.type) for i, key in enumerate(keys)]
        ordered = ordered.where(tuple_(*keys) < tuple_(*bound))
    elif kind == _SKIP:
        ordered = ordered.offset(bindparam("page_skip"))
    return ordered.limit(bindparam("page_limit"))


@lru_cache(maxsize=256)
def _count_statement(query: Select[Any]) -> Select[Any]:
    # Counted over the query as a subquery, so joins and filters count the rows they list.
    return select(func.count()).select_from(query.subquery())


async def paginate(
    session: AsyncSession,
    query: Select[Row],
    page: PageParams,
    *,
    keys: Keys,
    count: Select[Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Rows[Row]:
    """One page of `query` (filtered, not ordered; its bound parameters in `params`), newest
    first by `keys` (a unique sort key, e.g. `(created_at, id)`; an index on them serves both
    `skip` and `cursor` pages), the total, and the next page's cursor.

    `count` is a query for the total (with the same `params`), when the feature keeps one
    cheaper than counting every row the query matches (the default).

    Build `query` and `count` once, at module level, with `bindparam`s for what varies per
    request: the statements derived from them are then cached (see `_page_statement`).
    """
    values: dict[str, Any] = dict(params or {})
    total = await session.scalar(count if count is not None else _count_statement(query), values)
    # One row more than the page tells whether there is a next one, without another query.
    values["page_limit"] = page.limit + 1
    if page.after is not None:
        kind = _AFTER
        values.update((f"after_{i}", value) for i, value in enumerate(_checked(keys, page.after)))
    elif page.skip:
        kind = _SKIP
        values["page_skip"] = page.skip
    else:
        kind = _FIRST
    rows = (await session.scalars(_page_statement(query, keys, kind), values)).all()
    data = rows[: page.limit]
    next_cursor = None
    if len(rows) > page.limit:
        next_cursor = encode_cursor(*(getattr(data[-1], key.key) for key in keys))
    return Rows(data=data, count=int(total or 0), next_cursor=next_cursor)
