"""A request tries only the routes of the feature whose prefix its path has (app.core.routing)."""

from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from app.core.routing import FeatureRouter, include_feature_router
from app.items.router import router as items_router
from app.users.router import router as users_router

pytestmark = pytest.mark.anyio


def _count_matching(monkeypatch: pytest.MonkeyPatch, router: FeatureRouter) -> list[str]:
    tried: list[str] = []
    for route in router.routes:
        original = route.matches

        def counting(scope: Any, _original: Any = original, _route: Any = route) -> Any:
            tried.append(_route.path)
            return _original(scope)

        monkeypatch.setattr(route, "matches", counting)
    return tried


async def test_a_request_does_not_try_the_routes_of_other_features(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    items_tried = _count_matching(monkeypatch, items_router)
    users_tried = _count_matching(monkeypatch, users_router)

    assert (await client.get("/users/me", headers=superuser_headers)).status_code == 200
    assert items_tried == []
    assert users_tried  # its own feature's routes are tried as before

    users_tried.clear()
    assert (await client.get("/items/", headers=superuser_headers)).status_code == 200
    assert users_tried == []
    assert items_tried


async def test_the_answers_outside_every_prefix_are_unchanged(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    missing = await client.get("/nowhere", headers=superuser_headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "No route matches GET /api/v1/nowhere"
    # A prefix's own 405 still lists the methods of its routes.
    wrong = await client.put("/items/", headers=superuser_headers)
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["allow"]


async def test_a_feature_router_not_mounted_by_prefix_is_matched_as_fastapi_does() -> None:
    app = FastAPI()
    plain = FeatureRouter(prefix="/things")
    mounted = FeatureRouter(prefix="/others")

    @plain.get("/")
    async def things() -> dict[str, str]:
        return {"from": "things"}

    @mounted.get("/")
    async def others() -> dict[str, str]:
        return {"from": "others"}

    app.include_router(plain, prefix="/v1")
    include_feature_router(app, mounted, prefix="/v1")
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/things/")).json() == {"from": "things"}
        assert (await client.get("/v1/others/")).json() == {"from": "others"}
        assert (await client.get("/v1/nothing/")).status_code == 404
