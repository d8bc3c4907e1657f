"""The same-work ceiling: what this machine serves when a request does our app's work and no more.

Per request, as `app.users.deps.get_current_user` and `app.items.deps.get_owned_item` do: verify
the joserfc HS256 access token (our own `decode_access_token`), load the user and their session
in one query, refuse an ended session, a changed password (the `cred` tag) and an inactive user,
then load the item by id and owner; answer the same JSON as `UserPublic` / `ItemPublic`. Raw
asyncpg on a pool as large as ours, no ORM, no transaction around reads, no middleware.

    uvicorn bench.ceiling:create_app --factory --loop uvloop --http httptools
"""

import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request, Response

from app.core.config import Settings
from app.core.pagination import encode_cursor
from app.core.security import InvalidTokenError, credential_fingerprint, decode_access_token

USER = (
    "SELECT u.id, u.email, u.full_name, u.is_active, u.is_superuser, u.created_at, "
    "u.hashed_password, s.ended_at FROM users u "
    "JOIN user_sessions s ON s.user_id = u.id AND s.id = $2 WHERE u.id = $1"
)
ITEM = (
    "SELECT id, title, description, owner_id, created_at, version FROM items "
    "WHERE id = $1 AND owner_id = $2"
)
PAGE = (
    "SELECT id, title, description, owner_id, created_at, version FROM items "
    "WHERE owner_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3"
)
EXACT_COUNT = "SELECT count(*) FROM items WHERE owner_id = $1"
# The pages branch keeps an exact per-owner counter; where it exists, ours reads it, so do we.
COUNTER = "SELECT coalesce((SELECT count FROM item_counts WHERE owner_id = $1), 0)"
INSERT = (
    "INSERT INTO items (id, title, description, owner_id, created_at, version) "
    "VALUES ($1, $2, $3, $4, now(), 1) "
    "RETURNING id, title, description, owner_id, created_at, version"
)


class Refused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")  # pydantic's rendering of UTC


def _json(body: object, status: int = 200, etag: int | None = None) -> Response:
    headers = {"ETag": f'"{etag}"'} if etag is not None else None
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(content, status, headers, media_type="application/json")


def _item(row: Any) -> dict[str, object]:
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "description": row["description"],
        "owner_id": str(row["owner_id"]),
        "created_at": _time(row["created_at"]),
    }


Handler = Callable[..., Coroutine[Any, Any, Response]]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    dsn = settings.DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://")
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # As large as ours, grown on demand like ours; idle extras closed soon, as PostgreSQL's
        # connections are shared with the other servers of the run.
        state["pool"] = pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW,
            max_inactive_connection_lifetime=5,
        )
        counter = await pool.fetchval("SELECT to_regclass('item_counts') IS NOT NULL")
        state["count"] = COUNTER if counter else EXACT_COUNT
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    async def current_user(request: Request, connection: Any) -> Any:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise Refused(401)
        try:
            claims = decode_access_token(token, settings)
            user_id, session_id = uuid.UUID(claims.subject), uuid.UUID(claims.session_id or "")
        except (InvalidTokenError, ValueError) as error:
            raise Refused(401) from error
        user = await connection.fetchrow(USER, user_id, session_id)
        if user is None or user["ended_at"] is not None:
            raise Refused(401)
        tag = credential_fingerprint(user["hashed_password"], settings)
        if not hmac.compare_digest(claims.credential, tag):
            raise Refused(401)
        if not user["is_active"]:
            raise Refused(403)
        return user

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        """A handler given the request, a pooled connection and the current user; a refusal
        is its status with an empty problem."""

        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                async with state["pool"].acquire() as connection:
                    try:
                        user = await current_user(request, connection)
                        return await handler(request, connection, user)
                    except Refused as refused:
                        return _json({"status": refused.status}, refused.status)

            app.add_api_route(path, endpoint, methods=[method])
            return handler

        return register

    @route("GET", "/api/v1/users/me")
    async def me(_: Request, __: Any, user: Any) -> Response:
        keys = ("email", "full_name", "is_active", "is_superuser")
        body = {"id": str(user["id"]), **{key: user[key] for key in keys}}
        return _json({**body, "created_at": _time(user["created_at"])})

    @route("GET", "/api/v1/items/")
    async def items(request: Request, connection: Any, user: Any) -> Response:
        skip = int(request.query_params.get("skip", 0))
        limit = int(request.query_params.get("limit", 100))
        # One row more than the page tells whether there is a next one, as ours does.
        rows = await connection.fetch(PAGE, user["id"], skip, limit + 1)
        count = await connection.fetchval(state["count"], user["id"])
        page = rows[:limit]
        after = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
        return _json({"data": [_item(row) for row in page], "count": count, "next_cursor": after})

    @route("GET", "/api/v1/items/{item_id}")
    async def item(request: Request, connection: Any, user: Any) -> Response:
        try:
            item_id = uuid.UUID(request.path_params["item_id"])
        except ValueError as error:
            raise Refused(422) from error
        row = await connection.fetchrow(ITEM, item_id, user["id"])  # by id AND owner
        if row is None:
            raise Refused(404)
        return _json(_item(row), etag=row["version"])

    @route("POST", "/api/v1/items/")
    async def create(request: Request, connection: Any, user: Any) -> Response:
        body = await request.json()
        title = body.get("title")
        if not isinstance(title, str) or not 0 < len(title) <= 255:
            raise Refused(422)
        values = (uuid.uuid4(), title, body.get("description"), user["id"])
        row = await connection.fetchrow(INSERT, *values)
        return _json(_item(row), 201, etag=row["version"])

    return app
