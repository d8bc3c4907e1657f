"""Conditional requests (RFC 9110, section 13) on rows that have a version.

A row's version is its strong ETag, `"<version>"` (quoted, no `W/`): every write bumps it, so two
representations with one ETag are byte for byte the same. Reads answer it and honour
`If-None-Match` (304); writes (`IfMatch.write`) honour `If-Match` (412 with the current ETag),
checked again by the write's own compare-and-set statement (`app.core.crud.update_versioned`), so
a change made between the read and the write is a 412 too, never a silent overwrite.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response

from app.core.errors import AppError, ConcurrentUpdate
from app.core.problems import problem_responses

ETAG = "ETag"

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (RFC 9110, 8.8.3). A comma may sit inside the quotes,
# so a list is read tag by tag, not split on commas; anything between tags names none.
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def etag(version: int) -> str:
    """The strong entity tag of a row at this version: `"3"`."""
    return f'"{version}"'


def tag(response: Response, version: int) -> None:
    """Send the ETag of the row this response carries (a new one, after a write)."""
    response.headers[ETAG] = etag(version)


def _names(value: str, version: int, *, weak: bool) -> bool:
    """Whether the header value is `*` or lists this version's tag. Strong comparison (for
    If-Match) never matches a weak tag; weak comparison (If-None-Match) ignores `W/`."""
    if value.strip() == "*":
        return True
    return any(
        opaque == str(version) and (weak or not is_weak)
        for is_weak, opaque in _ENTITY_TAG.findall(value)
    )


class PreconditionFailed(AppError):
    """`If-Match` names no current version of the row: it changed since the client read it."""

    status_code = 412
    title = "Precondition Failed"
    code = "precondition-failed"
    detail = "It changed since you read it: read it again (its ETag is in this answer), then retry"

    def __init__(self, version: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers = {ETAG: etag(version)}


@dataclass(frozen=True)
class IfMatch:
    """The request's `If-Match` (None: not sent)."""

    value: str | None

    @property
    def any_version(self) -> bool:
        """`If-Match: *`: any version will do; the write only needs the row to exist."""
        return self.value is not None and self.value.strip() == "*"

    @contextmanager
    def write(self, version: int) -> Iterator[None]:
        """Around the write of a row this request read at `version`: refused (412) unless
        `If-Match`, when sent, names that version or is `*`. A concurrent change the write runs
        into (ConcurrentUpdate) is a 412 as well when `If-Match` was sent, and stays a 409
        without it: the client asked for no precondition, but its write was based on a state
        that was gone by the time it was stored."""
        if self.value is not None and not _names(self.value, version, weak=False):
            raise PreconditionFailed(version)
        try:
            yield
        except ConcurrentUpdate as race:
            if self.value is None:
                raise
            raise PreconditionFailed(race.current_version) from race


def _header(request: Request, name: str) -> str | None:
    # A list header may come as several lines (RFC 9110, 5.3): one list, in order.
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


async def _if_match(
    request: Request,
    _: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='Write only if the current ETag is one of these (`"3"`, or `*` for any): '
            "otherwise 412 with the current ETag. Weak tags (`W/...`) never match.",
        ),
    ] = None,
) -> IfMatch:
    return IfMatch(_header(request, "if-match"))


async def _if_none_match(
    request: Request,
    _: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="The ETag(s) you hold: when one is current the answer is a 304 without "
            "a body.",
        ),
    ] = None,
) -> str | None:
    return _header(request, "if-none-match")


IfMatchDep = Annotated[IfMatch, Depends(_if_match)]
IfNoneMatchDep = Annotated[str | None, Depends(_if_none_match)]


def not_modified(if_none_match: str | None, version: int, response: Response) -> Response | None:
    """A 304 with the ETag when `If-None-Match` names this version (or is `*`); otherwise None,
    and `response` carries the ETag: `return not_modified(...) or row`."""
    if if_none_match is not None and _names(if_none_match, version, weak=True):
        return Response(status_code=304, headers={ETAG: etag(version)})
    tag(response, version)
    return None


ETAG_HEADERS = {
    ETAG: {
        "description": 'The strong entity tag of the current version, e.g. `"3"`: send it in '
        "`If-Match` to write only that version, or in `If-None-Match` to read only a change",
        "schema": {"type": "string"},
    }
}


def tagged_responses(status: int = 200) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: this success status carries the ETag."""
    return {status: {"headers": ETAG_HEADERS}}


def read_responses() -> dict[int | str, dict[str, Any]]:
    """OpenAPI of a conditional read: the ETag, and 304."""
    return {
        **tagged_responses(),
        304: {
            "description": "Not Modified: `If-None-Match` names the current ETag",
            "headers": ETAG_HEADERS,
        },
    }


def write_responses(*, tagged: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI of a conditional write: 409 (a concurrent change without If-Match), 412 with the
    current ETag, and the new ETag on success (`tagged`)."""
    responses = problem_responses(409, 412)
    responses[412]["headers"] = ETAG_HEADERS
    return {**(tagged_responses() if tagged else {}), **responses}
