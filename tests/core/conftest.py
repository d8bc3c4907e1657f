"""Fixtures of the outage tests (tests/core/outage.py): their PostgreSQL database, made and
migrated once per run, and a fault proxy in front of it for each test."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import URL

from tests.core import outage
from tests.core.faultproxy import FaultProxy


@pytest.fixture(scope="session")
async def outage_url() -> URL:
    return await outage.prepare_database()


@pytest.fixture
async def proxy(outage_url: URL) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(outage_url.host or "127.0.0.1", outage_url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()
