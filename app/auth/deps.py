"""Who is calling. Every private router is mounted behind `get_current_user`."""

import hmac
import uuid
from typing import Annotated

from fastapi import Depends

from app.auth.errors import InactiveUser, NotSuperuser
from app.core.deps import InvalidCredentials, SessionDep, SettingsDep, TokenClaimsDep
from app.core.security import credential_fingerprint
from app.users import crud as users_crud
from app.users.models import User


async def get_current_user(
    claims: TokenClaimsDep, session: SessionDep, settings: SettingsDep
) -> User:
    try:
        user_id = uuid.UUID(claims.subject)
    except ValueError as error:
        raise InvalidCredentials("Could not validate credentials") from error
    user = await users_crud.get(session, user_id)
    # Deleted, or the password changed, since the token was issued.
    if user is None or not hmac.compare_digest(
        claims.credential, credential_fingerprint(user.hashed_password, settings)
    ):
        raise InvalidCredentials("Could not validate credentials")
    if not user.is_active:
        raise InactiveUser()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise NotSuperuser()
    return user


SuperUser = Annotated[User, Depends(get_superuser)]
