"""The feature list: every folder is in it, its declarations are consistent, and a router module
that publishes nothing stops the app at start."""

import sys
from pathlib import Path

import pytest

import app as app_package
from app import features
from app.core.config import Settings
from app.core.db import Base
from app.features import Feature, FeatureError
from app.main import create_app

APP = Path(features.__file__).parent


def test_every_feature_folder_is_in_the_feature_list() -> None:
    # A package under app/ that is neither core, migrations nor listed would never be mounted or
    # migrated (the exhaustive import contract fails on it too).
    folders = {path.parent.name for path in APP.glob("*/__init__.py")} - {"core", "migrations"}
    assert folders == {feature.name for feature in features.FEATURES}


def test_models_of_every_feature_are_registered() -> None:
    features.import_models()
    assert {"users", "items"} <= set(Base.metadata.tables)


def test_private_routers_are_the_default() -> None:
    public = {
        route.path_format  # type: ignore[attr-defined]
        for router, is_public in features.routers()
        if is_public
        for route in router.routes
    }
    assert public == {
        "/login/access-token",
        "/login/oidc/token",
        "/login/oidc/{provider}",
        "/login/oidc/{provider}/callback",
        "/login/refresh",
        "/password-recovery/{email}",
        "/reset-password/",
        "/users/signup",
        "/utils/health-check/",
        "/utils/live/",
        "/utils/ready/",
    }


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ((Feature("a"), Feature("a")), "listed twice"),
        ((Feature("a", uses=("b",)),), "not another feature"),
        ((Feature("a", uses=("a",)),), "not another feature"),
        (
            (
                Feature("a", public=("deps",)),
                Feature("b", uses=("a",), public=("deps",)),
                Feature("c", uses=("b",), public=("deps",)),
            ),
            "",
        ),
        (
            (
                Feature("a", uses=("b",), public=("deps",)),
                Feature("b", uses=("a",), public=("deps",)),
            ),
            "import each other: a -> b -> a",
        ),
        ((Feature("a"), Feature("b", uses=("a",))), "declares no public modules"),
        ((Feature("a", public=("router",)),), "cannot be public"),
        ((Feature("a", public=("helpers",)),), "cannot be public"),
        ((Feature("Orders"),), "lower-case identifiers"),
    ],
)
def test_feature_declarations_are_checked(declared: tuple[Feature, ...], message: str) -> None:
    if not message:
        features.check(declared)  # a chain is fine
        return
    with pytest.raises(FeatureError, match=message):
        features.check(declared)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from fastapi import APIRouter\n\nroutes = APIRouter()\n", "neither `router` nor"),
        ("router = object()\n", "is not an APIRouter"),
    ],
)
def test_a_router_module_that_publishes_nothing_stops_the_app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    source: str,
    message: str,
) -> None:
    package = tmp_path / "misnamed"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "router.py").write_text(source)
    monkeypatch.setattr(app_package, "__path__", [*app_package.__path__, str(tmp_path)])
    monkeypatch.setattr(features, "FEATURES", (*features.FEATURES, Feature("misnamed")))
    try:
        with pytest.raises(FeatureError, match=message):
            create_app(settings)
    finally:
        sys.modules.pop("app.misnamed.router", None)
        sys.modules.pop("app.misnamed", None)


def test_every_feature_has_owners_for_its_two_folders() -> None:
    # Last matching line wins: without its own lines a feature falls to the default owners, and
    # its team is never asked to review changes to it.
    owners = (APP.parent / ".github" / "CODEOWNERS").read_text().splitlines()
    patterns = {line.split()[0] for line in owners if line.strip() and not line.startswith("#")}
    for feature in features.FEATURES:
        assert {f"/app/{feature.name}/", f"/tests/{feature.name}/"} <= patterns, feature.name
