"""Loading a user by path id, with the permission rule of each kind of route."""

import uuid
from typing import Annotated

from fastapi import Depends

from app.auth.deps import CurrentUser, SuperUser
from app.auth.errors import NotSuperuser
from app.core.deps import SessionDep
from app.users import crud
from app.users.errors import UserNotFound
from app.users.models import User


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
