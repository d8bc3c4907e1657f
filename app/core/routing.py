"""Feature routers: a request outside their prefix passes them by at once, and each of their
routes is a unit of work (`UnitOfWorkRoute`: the request's session, committed or rolled back).

FastAPI tries an app's routes one by one, every included router in turn, and each route it tries
costs about forty Python calls (FastAPI 0.165 keeps per-route scope bookkeeping while matching):
`GET /api/v1/items/{id}` tried the users' and utils' routes before its own. A `FeatureRouter`
with a prefix, once mounted with `include_feature_router`, answers "no match" for a path outside
`<mount prefix><its prefix>` without trying its routes. Routes, their order, the OpenAPI document
and every answer are the same (tests/core/test_routing.py).
"""

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Match
from starlette.types import Scope

UNIT_OF_WORK = "app.unit_of_work"


class UnitOfWork:
    """A request's database session, opened when a dependency first asks for it."""

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened: AsyncSession | None = None

    def session(self, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncSession:
        if self.opened is None:
            self.opened = sessionmaker()
        return self.opened

    async def end(self, *, commit: bool) -> None:
        session = self.opened
        if session is None:
            return
        # Shielded, as FastAPI shields the exit of a dependency with `yield`: a request that is
        # cancelled (a shutdown's deadline) still ends its transaction one way or the other, and
        # the connection goes back to the pool whatever happened.
        with anyio.CancelScope(shield=True):
            try:
                if commit:
                    await session.commit()
                else:
                    await session.rollback()
            finally:
                await session.close()


class UnitOfWorkRoute(APIRoute):
    """One unit of work per request: the session that `SessionDep` gives the handler and its
    dependencies is committed once the handler has succeeded and its answer is built, before
    the answer is sent (a client that got 201 can read what it created, and a failed commit is
    an error response instead of a lie); rolled back when anything failed.

    A route wrapper rather than a dependency with `yield`: FastAPI runs those in an exit stack,
    an async context manager and a shielded cancel scope per request, which cost more than the
    query of a `GET /users/me` (bench/README.md)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def unit_of_work(request: Request) -> Response:
            work = request.scope[UNIT_OF_WORK] = UnitOfWork()
            try:
                response = await handler(request)
            except BaseException:
                await work.end(commit=False)
                raise
            await work.end(commit=True)
            return response

        return unit_of_work


class FeatureRouter(APIRouter):
    """An `APIRouter` for a feature's routes (`FeatureRouter(prefix="/items", tags=[...])`)."""

    _path_prefix: str | None = None  # set when mounted; until then, matched as FastAPI does

    def __init__(self, **options: Any) -> None:
        super().__init__(route_class=UnitOfWorkRoute, **options)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._path_prefix is not None:
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            if not path.startswith(self._path_prefix):
                return Match.NONE, {}
        return super().matches(scope)


def include_feature_router(app: FastAPI, router: APIRouter, *, prefix: str, **options: Any) -> None:
    """`app.include_router(router, prefix=prefix, **options)`; a `FeatureRouter` with a prefix
    of its own is then passed by for paths outside it."""
    if isinstance(router, FeatureRouter) and router.prefix:
        router._path_prefix = prefix + router.prefix
    app.include_router(router, prefix=prefix, **options)
