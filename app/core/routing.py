"""Feature routers that a request outside their prefix passes by at once.

FastAPI tries an app's routes one by one, every included router in turn, and each route it tries
costs about forty Python calls (FastAPI 0.165 keeps per-route scope bookkeeping while matching):
`GET /api/v1/items/{id}` tried the users' and utils' routes before its own. A `FeatureRouter`
with a prefix, once mounted with `include_feature_router`, answers "no match" for a path outside
`<mount prefix><its prefix>` without trying its routes. Routes, their order, the OpenAPI document
and every answer are the same (tests/core/test_routing.py).
"""

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import Match
from starlette.types import Scope


class FeatureRouter(APIRouter):
    """An `APIRouter` for a feature's routes (`FeatureRouter(prefix="/items", tags=[...])`)."""

    _path_prefix: str | None = None  # set when mounted; until then, matched as FastAPI does

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
