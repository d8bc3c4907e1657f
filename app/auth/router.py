from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from app.auth.errors import InactiveUserLogin, IncorrectCredentials
from app.auth.schemas import Token
from app.core.deps import PasswordsDep, SessionDep, SettingsDep
from app.core.problems import problem_responses
from app.core.security import create_access_token, credential_fingerprint
from app.users import service as users_service
from app.users.deps import CurrentUser
from app.users.models import User
from app.users.schemas import UserRead

public_router = APIRouter(prefix="/login", tags=["login"])
router = APIRouter(prefix="/login", tags=["login"])


@public_router.post(
    "/access-token",
    response_model=Token,
    responses=problem_responses(400),
)
async def login_access_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
) -> Token:
    """OAuth2 password grant: `username` is the email."""
    user = await users_service.authenticate(
        session, passwords, email=form.username, password=form.password
    )
    if user is None:
        raise IncorrectCredentials()
    if not user.is_active:
        raise InactiveUserLogin()
    token = create_access_token(
        str(user.id),
        settings,
        credential=credential_fingerprint(user.hashed_password, settings),
    )
    return Token(access_token=token.token, expires_in=token.expires_in)


@router.post("/test-token", response_model=UserRead)
async def test_token(user: CurrentUser) -> User:
    """The user the token belongs to."""
    return user
