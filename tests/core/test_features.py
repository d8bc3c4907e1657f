from pathlib import Path

from app import features
from app.core.db import Base

APP = Path(features.__file__).parent


def test_every_feature_folder_is_in_the_feature_list() -> None:
    # A folder with a router.py or models.py that is missing from FEATURES would never be
    # mounted or migrated, silently.
    folders = {
        f"app.{path.parent.name}"
        for pattern in ("*/router.py", "*/models.py")
        for path in APP.glob(pattern)
    }
    assert folders == set(features.FEATURES)


def test_models_of_every_feature_are_registered() -> None:
    features.import_models()
    assert {"users", "items"} <= set(Base.metadata.tables)


def test_private_routers_are_the_default() -> None:
    public = {
        route.path  # type: ignore[attr-defined]
        for router, is_public in features.routers()
        if is_public
        for route in router.routes
    }
    assert public == {"/login/access-token", "/users/signup", "/utils/health-check/"}
