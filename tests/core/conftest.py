"""Fixtures of the outage tests (tests/core/outage.py): their PostgreSQL database, made and
migrated once per run, and a fault proxy in front of it for each test; and the throttle tests'
Throttles (tests/core/throttling.py)."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import URL

from app.core.config import Settings
from app.core.throttle import KEY_PREFIX, STORAGE_RETRY_SECONDS, Throttle
from tests.core import outage
from tests.core.faultproxy import FaultProxy
from tests.core.throttling import ThrottleMaker


@pytest.fixture(scope="session")
async def outage_url() -> URL:
    return await outage.prepare_database()


@pytest.fixture
async def proxy(outage_url: URL) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(outage_url.host or "127.0.0.1", outage_url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def make_throttle(settings: Settings) -> AsyncIterator[ThrottleMaker]:
    """Build Throttles from the test settings with `changes`; all closed at teardown."""
    made: list[Throttle] = []

    def make(
        *,
        key_prefix: str = KEY_PREFIX,
        storage_retry_seconds: float = STORAGE_RETRY_SECONDS,
        **changes: Any,
    ) -> Throttle:
        throttle = Throttle(
            settings.model_copy(update=changes),
            key_prefix=key_prefix,
            storage_retry_seconds=storage_retry_seconds,
        )
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        await throttle.aclose()


@pytest.fixture
async def use_throttle(app: Any, make_throttle: ThrottleMaker) -> AsyncIterator[ThrottleMaker]:
    """Like `make_throttle`, and the app serves with the Throttle built, for this test only."""
    original = app.state.throttle

    def use(**changes: Any) -> Throttle:
        app.state.throttle = make_throttle(**changes)
        return app.state.throttle  # type: ignore[no-any-return]

    yield use
    app.state.throttle = original
