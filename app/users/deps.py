"""Who is calling, and loading a user by path id with the permission rule of each kind of route.

This is the identity surface other features depend on (`CurrentUser`, `SuperUser`): it belongs to
the accounts it loads, not to the login flow, so `items` never depends on `auth`. Every private
router is mounted behind `get_current_user`.
"""

import hmac
import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.core.deps import BearerTokenDep, InvalidCredentials, SessionDep, token_claims
from app.core.security import credential_fingerprint
from app.users import crud
from app.users.errors import InactiveUser, NotSuperuser, UserNotFound
from app.users.models import User


async def get_current_user(request: Request, token: BearerTokenDep, session: SessionDep) -> User:
    # The token and the settings are taken here rather than through `TokenClaimsDep` and
    # `SettingsDep`: every private request solves this, and each dependency FastAPI solves costs
    # about as much as a dozen lines of Python (bench/README.md).
    settings: Settings = request.app.state.settings
    claims = token_claims(token, settings)
    try:
        user_id = uuid.UUID(claims.subject)
        session_id = uuid.UUID(claims.session_id or "")
    except ValueError as error:
        raise InvalidCredentials("Could not validate credentials") from error
    # One query: the user and their session.
    found = await crud.get_in_session(session, user_id, session_id)
    if found is None:  # deleted
        raise InvalidCredentials("Could not validate credentials")
    user, session_ended_at = found
    if session_ended_at is not None:
        # Logged out, or ended by a password change, deactivation or demotion: for good, even
        # after a reactivation.
        raise InvalidCredentials("The session has ended: log in again")
    if not hmac.compare_digest(
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


async def get_managed_user(user_id: uuid.UUID, _: SuperUser, session: SessionDep) -> User:
    """Any user, for a superuser; 404 when it does not exist."""
    user = await crud.get(session, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def get_visible_user(user_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> User:
    """Oneself for anyone; others only for a superuser (else 403, whether or not they exist)."""
    if user_id == user.id:
        return user
    if not user.is_superuser:
        raise NotSuperuser()
    return await get_managed_user(user_id, user, session)


ManagedUser = Annotated[User, Depends(get_managed_user)]
VisibleUser = Annotated[User, Depends(get_visible_user)]
