"""Dependencies every feature shares, as `Annotated` aliases.

The current user is a `users` model, and core imports no feature, so `CurrentUser` and `SuperUser`
live in `app.auth.deps`; here is everything below them: settings, the session, the bearer token.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import API_V1_PREFIX, Settings
from app.core.errors import Unauthorized
from app.core.routing import UNIT_OF_WORK, UnitOfWork
from app.core.security import (
    InvalidTokenError,
    Passwords,
    TokenClaims,
    decode_access_token,
    get_passwords,
)


async def _app_settings(request: Request) -> Settings:
    # The settings the app was built with (tests build apps with their own). `async def`, like
    # every dependency that does not block: FastAPI runs a plain `def` in the threadpool, a
    # thread hop on every request for a dictionary lookup.
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_app_settings)]


async def _passwords(settings: SettingsDep) -> Passwords:
    return get_passwords(settings)


PasswordsDep = Annotated[Passwords, Depends(_passwords)]


async def get_session(request: Request) -> AsyncSession:
    """The request's session: its unit of work (`UnitOfWorkRoute`) commits or rolls it back."""
    work: UnitOfWork | None = request.scope.get(UNIT_OF_WORK)
    if work is None:
        raise RuntimeError("SessionDep on a route that is no UnitOfWorkRoute")
    return work.session(request.app.state.sessionmaker)


SessionDep = Annotated[AsyncSession, Depends(get_session)]

bearer_token = OAuth2PasswordBearer(
    tokenUrl=f"{API_V1_PREFIX}/login/access-token", auto_error=False
)


class NotAuthenticated(Unauthorized):
    code = "not-authenticated"
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012


class InvalidCredentials(Unauthorized):
    code = "invalid-token"


BearerTokenDep = Annotated[str | None, Depends(bearer_token)]


def token_claims(token: str | None, settings: Settings) -> TokenClaims:
    """The claims of the request's access token; 401 when it has none or an invalid one."""
    if not token:
        raise NotAuthenticated("Not authenticated: send an `Authorization: Bearer <token>` header")
    try:
        return decode_access_token(token, settings)
    except InvalidTokenError as error:
        raise InvalidCredentials("Could not validate credentials") from error


async def get_token_claims(settings: SettingsDep, token: BearerTokenDep) -> TokenClaims:
    return token_claims(token, settings)


TokenClaimsDep = Annotated[TokenClaims, Depends(get_token_claims)]
