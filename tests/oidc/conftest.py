"""A real OpenID provider for the whole session, and per test: a client of it configured as
our provider `acme`, and a browser for our app."""

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest

from app.core.config import Settings
from app.core.oidc_provider import OidcProvider
from tests.oidc.flow import FRONTEND, PROVIDER
from tests.oidc.provider import FakeProvider


@pytest.fixture(scope="session")
def oidc_server() -> Iterator[FakeProvider]:
    provider = FakeProvider()
    with provider.serve():
        yield provider


@pytest.fixture
def provider(oidc_server: FakeProvider, override_settings: Callable[..., Settings]) -> FakeProvider:
    """The provider, reset, with a new client of ours configured as `acme` (a new client each
    test, so no test sees the metadata or keys another one's app cached)."""
    oidc_server.reset()
    client_id, secret = oidc_server.new_client()
    override_settings(
        FRONTEND_HOST=FRONTEND,
        OIDC_PROVIDERS=[
            OidcProvider(
                name=PROVIDER,
                issuer=oidc_server.issuer,
                client_id=client_id,
                client_secret=secret,
            )
        ],
    )
    return oidc_server


@pytest.fixture
async def browser(app: Any, client: httpx2.AsyncClient) -> AsyncIterator[httpx2.AsyncClient]:
    """Our app over https (the state cookie is Secure), keeping cookies like a browser; it sees
    the test's database through `client`'s setup."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://test/api/v1") as browser:
        yield browser
