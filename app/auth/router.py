from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from fastapi.security import OAuth2PasswordRequestForm

from app.auth import service
from app.auth.errors import InactiveUserLogin, IncorrectCredentials
from app.auth.schemas import Token
from app.core.deps import PasswordsDep, SessionDep, SettingsDep
from app.core.problems import problem_responses
from app.core.schemas import Message
from app.core.security import create_access_token, credential_fingerprint
from app.emails.service import render_html
from app.users import service as users_service
from app.users.deps import CurrentUser, SuperUser
from app.users.errors import UserNotFound
from app.users.models import User
from app.users.schemas import Email, NewPassword, UserPublic

# The full-stack template's paths: login under /login, recovery at the root; one tag, so the
# generated client has them all on its LoginService.
public_router = APIRouter(tags=["login"])
router = APIRouter(tags=["login"])

RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"


@public_router.post(
    "/login/access-token",
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


@router.post("/login/test-token", response_model=UserPublic)
async def test_token(user: CurrentUser) -> User:
    """The user the token belongs to."""
    return user


# `:path`: an address may hold a `/` (`a/b@example.com`), which arrives decoded.
@public_router.post("/password-recovery/{email:path}", response_model=Message)
async def recover_password(email: Email, session: SessionDep) -> Message:
    """Email a password reset link to this address, if it belongs to an active account.

    The answer is the same either way, and so is the work done before it: the lookup happens
    when the email is sent, off the request path.
    """
    await service.request_recovery(session, email=email)
    return Message(message=RECOVERY_MESSAGE)


@public_router.post("/reset-password/", response_model=Message, responses=problem_responses(400))
async def reset_password(
    body: NewPassword, session: SessionDep, settings: SettingsDep, passwords: PasswordsDep
) -> Message:
    """Set a new password with the token from the recovery email; every session ends."""
    await service.reset_password(
        session, passwords, settings, token=body.token, new_password=body.new_password
    )
    return Message(message="Password updated successfully")


@router.post(
    "/password-recovery-html-content/{email:path}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **problem_responses(404)},
)
async def recover_password_html_content(
    email: Email, _: SuperUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The recovery email this address would get, as HTML (its subject in the `subject` header)."""
    composed = await service.compose_recovery(session, settings, email)
    if composed is None:
        raise UserNotFound()
    return HTMLResponse(render_html(composed, settings), headers={"subject": composed.subject})
