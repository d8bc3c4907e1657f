"""The steps of a sign-in as a browser takes them, and what the tests check after one."""

from urllib.parse import parse_qs, urlsplit

import httpx2
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Base
from app.oidc.models import OidcLoginCode
from app.users.models import User, UserSession

FRONTEND = "https://app.example.com"
PROVIDER = "acme"


async def start(browser: httpx2.AsyncClient, provider: str = PROVIDER) -> httpx2.Response:
    response = await browser.get(f"/login/oidc/{provider}")
    assert response.status_code == 302, response.text
    return response


async def at_provider(authorize_url: str) -> str:
    """The user signs in at the provider (real HTTP); the URL it sends the browser back to."""
    async with httpx2.AsyncClient(trust_env=False) as user_agent:
        response = await user_agent.get(authorize_url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def to_callback(browser: httpx2.AsyncClient, provider: str = PROVIDER) -> str:
    """Start a sign-in and go through the provider: the callback URL, with its code and state."""
    return await at_provider((await start(browser, provider)).headers["location"])


async def sign_in(browser: httpx2.AsyncClient) -> httpx2.Response:
    """A whole sign-in up to the callback's answer (a redirect to the frontend)."""
    return await browser.get(await to_callback(browser))


def frontend_query(response: httpx2.Response, path: str) -> dict[str, str]:
    """The query of the frontend page `response` redirects to, which must be `path`."""
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{FRONTEND}{path}"
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def login_error(response: httpx2.Response) -> str:
    query = frontend_query(response, "/login")
    assert set(query) == {"error"}
    return query["error"]


async def exchange(client: httpx2.AsyncClient, code: str) -> httpx2.Response:
    return await client.post("/login/oidc/token", json={"code": code})


async def count(session: AsyncSession, model: type[Base], *where: ColumnElement[bool]) -> int:
    return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def assert_nothing_stored(session: AsyncSession, email: str | None = None) -> None:
    """A refused sign-in created no account, issued no login code and opened no session."""
    if email is not None:
        assert await count(session, User, User.email == email.lower()) == 0
    assert await count(session, OidcLoginCode) == 0
    assert await count(session, UserSession) == 0
