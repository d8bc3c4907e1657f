import hmac
import uuid
from typing import Annotated

import structlog
from fastapi import Cookie, Depends, Header, Response
from fastapi.responses import HTMLResponse
from fastapi.security import OAuth2PasswordRequestForm
from prometheus_client import Counter

from app.auth import service
from app.auth.deps import (
    CSRF_COOKIE,
    CSRF_HEADER,
    REFRESH_COOKIE,
    REFRESH_PATH,
    forget_cookies,
    token_response,
)
from app.auth.errors import CsrfFailed, InactiveUserLogin, IncorrectCredentials, InvalidRefreshToken
from app.auth.schemas import RefreshRequest, Token
from app.core.deps import PasswordsDep, SessionDep, SettingsDep, TokenClaimsDep
from app.core.problems import problem_responses
from app.core.routing import FeatureRouter
from app.core.schemas import Message
from app.core.throttle import ClientAddressDep, ThrottleDep, TooManyRequests
from app.emails.service import render_html
from app.users import service as users_service
from app.users.deps import CurrentUser, SuperUser
from app.users.errors import UserNotFound
from app.users.models import User
from app.users.schemas import Email, NewPassword, UserPublic

# The full-stack template's paths: login under /login, recovery at the root; one tag, so the
# generated client has them all on its LoginService.
public_router = FeatureRouter(tags=["login"])
router = FeatureRouter(tags=["login"])

RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"

log = structlog.get_logger(__name__)

LOGIN_FAILURES = Counter(
    "auth_login_failures_total",
    "Refused password logins, by reason: `credentials` (wrong email or password), `inactive` "
    "(a deactivated account), `throttled` (too many failures already, 429).",
    ["reason"],
)
# Each reason's series exists from the start (at 0), so an alert's rate() sees the first one.
_FAILED = {
    reason: LOGIN_FAILURES.labels(reason) for reason in ("credentials", "inactive", "throttled")
}


@public_router.post(
    "/login/access-token",
    response_model=Token,
    # 429: too many failed logins for this account or address (Retry-After).
    # 503 (HashingBusy, with Retry-After): too many logins already wait for a password check.
    responses=problem_responses(400, 429, 503),
)
async def login_access_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    throttle: ThrottleDep,
    address: ClientAddressDep,
) -> Token:
    """OAuth2 password grant: `username` is the email. Opens a session: a short access token
    and a refresh token (`POST /login/refresh`)."""
    # Before any hashing: a guessing run against an account, or from an address, costs no argon2
    # once it is over the limit. Only failures count, so a busy office is not locked out.
    try:
        await throttle.check("login_failures_account", form.username)
        await throttle.check("login_failures_address", address)
    except TooManyRequests:
        log.warning("auth.throttled", route="login")
        _FAILED["throttled"].inc()
        raise
    user = await users_service.authenticate(
        session, passwords, email=form.username, password=form.password
    )
    if user is None:
        log.info("auth.login_failed", reason="credentials")
        _FAILED["credentials"].inc()
        await throttle.hit("login_failures_address", address)
        await throttle.hit("login_failures_account", form.username)
        raise IncorrectCredentials()
    if not user.is_active:
        log.info("auth.login_failed", reason="inactive", user_id=str(user.id))
        _FAILED["inactive"].inc()
        raise InactiveUserLogin()
    return token_response(await service.open_session(session, settings, user), response, settings)


@public_router.post(
    REFRESH_PATH,
    response_model=Token,
    responses=problem_responses(401, 403, 429),
)
async def refresh_token(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    body: RefreshRequest | None = None,
    cookie: Annotated[str | None, Cookie(alias=REFRESH_COOKIE, include_in_schema=False)] = None,
    csrf_cookie: Annotated[str | None, Cookie(alias=CSRF_COOKIE, include_in_schema=False)] = None,
    csrf_header: Annotated[str | None, Header(alias=CSRF_HEADER, include_in_schema=False)] = None,
) -> Token:
    """A new token pair for a refresh token (in the body, or the cookie in cookie mode); the
    presented one stops working. Presenting a used one again ends its session."""
    token = body.refresh_token if body is not None else None
    if token is None and settings.REFRESH_TOKEN_COOKIE and cookie:
        # A cookie is sent by the browser on its own: prove the page can read our CSRF cookie.
        if not csrf_cookie or not csrf_header or not hmac.compare_digest(csrf_cookie, csrf_header):
            raise CsrfFailed()
        token = cookie
    if not token:
        raise InvalidRefreshToken('Send the refresh token: {"refresh_token": "..."}')
    session_id = await service.session_of_refresh_token(session, token)
    if session_id is not None:
        await throttle.hit("refresh", str(session_id))
    pair = await service.refresh(session, settings, token=token)
    return token_response(pair, response, settings)


@router.post("/logout", response_model=Message)
async def logout(
    user: CurrentUser, claims: TokenClaimsDep, response: Response, session: SessionDep
) -> Message:
    """End this session: its access token and refresh tokens stop working."""
    await users_service.end_session(session, user, uuid.UUID(claims.session_id or ""))
    forget_cookies(response)
    return Message(message="Logged out")


@router.post("/logout/all", response_model=Message)
async def logout_all(user: CurrentUser, response: Response, session: SessionDep) -> Message:
    """End every session of this user, on every device."""
    await users_service.end_all_sessions(session, user, reason="logout-all")
    forget_cookies(response)
    return Message(message="Logged out of every session")


@router.post("/login/test-token", response_model=UserPublic)
async def test_token(user: CurrentUser) -> User:
    """The user the token belongs to."""
    return user


# `:path`: an address may hold a `/` (`a/b@example.com`), which arrives decoded.
@public_router.post(
    "/password-recovery/{email:path}", response_model=Message, responses=problem_responses(429)
)
async def recover_password(
    email: Email, session: SessionDep, throttle: ThrottleDep, address: ClientAddressDep
) -> Message:
    """Email a password reset link to this address, if it belongs to an active account.

    The answer is the same either way, and so is the work done before it: the lookup happens
    when the email is sent, off the request path. Limited per client address.
    """
    await throttle.hit("recovery", address)
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
