"""The one list of feature packages. Routers, models and migrations are found from it.

Adding a feature is one folder under `app/` and one line here. By convention a feature's
`router.py` may define `router` (mounted behind authentication: routes are private by default)
and `public_router` (mounted as is: every public route of the service is in one of these), and
its tables live in `models.py`.
"""

from collections.abc import Iterator
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from fastapi import APIRouter

FEATURES = (
    "app.utils",
    "app.auth",
    "app.users",
    "app.items",
)


def _submodules(name: str) -> Iterator[ModuleType]:
    for feature in FEATURES:
        if find_spec(f"{feature}.{name}") is not None:
            yield import_module(f"{feature}.{name}")


def import_models() -> list[ModuleType]:
    """Register every feature's tables on `Base.metadata` (for Alembic and the tests)."""
    return list(_submodules("models"))


def routers() -> Iterator[tuple[APIRouter, bool]]:
    """Each feature router, and whether it is public."""
    for module in _submodules("router"):
        public = getattr(module, "public_router", None)
        if isinstance(public, APIRouter):
            yield public, True
        private = getattr(module, "router", None)
        if isinstance(private, APIRouter):
            yield private, False
