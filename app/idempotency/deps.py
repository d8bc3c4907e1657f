"""The `Idempotency-Key` header of a create route, and the replay of a stored answer.

A route takes `idempotency: IdempotencyDep`, then: `claim()` before it writes anything (a
`Response` back means "already done": return it), and `complete()` with its answer before it
returns. Without the header both do nothing.
"""

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.deps import SessionDep, SettingsDep
from app.core.problems import problem_responses
from app.idempotency import service

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# The answer's headers a replay repeats (the body is the answer's own).
STORED_HEADERS = ("ETag", "Location")


@dataclass
class Idempotency:
    session: AsyncSession
    settings: Settings
    key: str | None
    scope: str
    status_code: int
    _claimed: service.Request | None = field(default=None, init=False)

    def _request(self, user_id: uuid.UUID, body: BaseModel) -> service.Request | None:
        if self.key is None:
            return None
        return service.Request(
            user_id=user_id,
            scope=self.scope,
            key=self.key,
            fingerprint=service.fingerprint(self.settings, body.model_dump(mode="json")),
        )

    async def replay(self, user_id: uuid.UUID, body: BaseModel) -> Response | None:
        """The stored answer when this key was used already, without writing anything (so a
        route can look before slow work that must not hold the connection, such as hashing)."""
        request = self._request(user_id, body)
        if request is None:
            return None
        stored = await service.find(self.session, self.settings, request)
        return None if stored is None else _replay(stored)

    async def claim(self, user_id: uuid.UUID, body: BaseModel) -> Response | None:
        """Claim the key for this request (None: do the work, then `complete()`), or the stored
        answer of the request that claimed it first, once that one has committed."""
        request = self._request(user_id, body)
        if request is None:
            return None
        stored = await service.claim(self.session, self.settings, request)
        if stored is not None:
            return _replay(stored)
        self._claimed = request
        return None

    async def complete(self, response: Response, body: BaseModel) -> None:
        """Store this request's answer (the route's status, `body`, and the headers set on
        `response` that a replay repeats) with its key, before the request commits."""
        if self._claimed is None:
            return
        headers = {
            name: response.headers[name] for name in STORED_HEADERS if name in response.headers
        }
        answer = service.Stored(
            status_code=response.status_code or self.status_code,
            body=body.model_dump_json(),
            headers=headers,
        )
        await service.complete(self.session, self._claimed, answer)


def _replay(stored: service.Stored) -> Response:
    return Response(
        content=stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers={**stored.headers, REPLAYED: "true"},
    )


async def _idempotency(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY,
            min_length=1,
            max_length=255,
            pattern=r"^[\x20-\x7e]+$",
            description="Any unique string (a UUID, say) of up to 255 printable ASCII characters. "
            "A retry with the same key and body gets the first answer again (with "
            f"`{REPLAYED}: true`) and creates nothing; the same key with another body is a 422. "
            "Per user and route; forgotten after `IDEMPOTENCY_KEY_TTL_HOURS` (default 24).",
        ),
    ] = None,
) -> Idempotency:
    route = request.scope["route"]
    assert isinstance(route, APIRoute)
    return Idempotency(
        session=session,
        settings=settings,
        key=key,
        scope=f"{request.method} {route.path}",
        status_code=route.status_code or 200,
    )


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]


def idempotent_responses(
    status: int, headers: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI of a create route that takes an `Idempotency-Key`: its success status with these
    `headers` and the replay marker, and the 422 of a key reused with another body."""
    replayed = {
        REPLAYED: {
            "description": "`true` when this is the stored answer to an earlier request with "
            "the same `Idempotency-Key`",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    return {status: {"headers": {**(headers or {}), **replayed}}, **problem_responses(422)}
