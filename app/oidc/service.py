"""Sign in with an OpenID Connect provider: the authorization-code flow with PKCE, the account
it leads to, and the one-time code that hands the result to the frontend.

authlib speaks the protocol: it reads the provider's metadata and keys (and keeps them), builds
the authorization URL with `state`, `nonce` and an S256 PKCE challenge, exchanges the code, and
checks the ID token's signature against the provider's JWKS and its claims (`iss`, `aud`, `exp`,
`iat`, `nonce`, `at_hash`).

Nothing is kept on the server between the redirect to the provider and its callback: `state`,
`nonce` and the PKCE verifier travel in a cookie signed with `SECRET_KEY` that lives ten
minutes (the router sets it HttpOnly, SameSite=Lax, scoped to the callback's path), so any
instance can finish a sign-in another one started.

The callback never puts a token in a URL: it stores a one-time code (as a SHA-256 hash; single
use, one minute) and sends the browser to the frontend with it; the frontend exchanges the code
for the usual token pair.
"""

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import httpx2
import structlog
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from itsdangerous import BadData, URLSafeTimedSerializer
from joserfc.errors import JoseError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.service import TokenPair
from app.core.config import Settings
from app.core.db import utcnow
from app.core.oidc_provider import OidcProvider
from app.core.security import Passwords
from app.oidc import crud
from app.oidc.errors import InvalidLoginCode, OidcLoginFailed, Reason
from app.users import service as users_service
from app.users.models import User
from app.users.schemas import UserCreate

log = structlog.get_logger(__name__)

LOGIN_STATE_SECONDS = 600
"""How long a sign-in may stay at the provider (the state cookie's lifetime)."""
LOGIN_CODE_SECONDS = 60
"""How long the frontend has to exchange the one-time code."""
ID_TOKEN_LEEWAY_SECONDS = 60
"""Clock skew allowed between the provider and us when checking `exp` and `iat`."""

_STATE_SALT = "oidc.login-state"
# The provider could not be reached, or answered with something that is not OAuth: a network
# error, an HTTP error status, a body that is not JSON, metadata without the endpoints we need.
_UNREACHABLE = (httpx2.HTTPError, ValueError, KeyError, TypeError, RuntimeError)
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class Provider:
    config: OidcProvider
    client: Any
    """authlib's OAuth 2 client app for this provider (built by `deps`, which keeps one per
    provider list): it caches the provider's metadata and keys between sign-ins."""

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class LoginState:
    """What the callback must see again: carried by the browser in a signed cookie."""

    provider: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class LoginStart:
    url: str
    """The provider's authorization URL to send the browser to."""
    sealed_state: str
    """The `LoginState`, signed: the state cookie's value."""


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.SECRET_KEY, salt=_STATE_SALT)


def seal_login_state(settings: Settings, login: LoginState) -> str:
    return _serializer(settings).dumps(asdict(login))


def unseal_login_state(settings: Settings, sealed: str | None) -> LoginState | None:
    """The state a cookie carries; None when it is missing, tampered with or too old."""
    if not sealed:
        return None
    try:
        data = _serializer(settings).loads(sealed, max_age=LOGIN_STATE_SECONDS)
        login = LoginState(**data)
    except (BadData, TypeError):
        return None
    fields = (login.provider, login.state, login.nonce, login.code_verifier)
    if not all(isinstance(value, str) and value for value in fields):
        return None
    return login


async def start_login(provider: Provider, settings: Settings, *, redirect_uri: str) -> LoginStart:
    """The provider's authorization URL for a new sign-in, and the cookie that must come back
    with its callback. OidcLoginFailed when the provider's metadata cannot be read."""
    try:
        await _metadata(provider)
        started = await provider.client.create_authorization_url(redirect_uri)
    except OidcLoginFailed as failure:
        _log_failure(provider.name, failure)
        raise
    login = LoginState(
        provider=provider.name,
        state=started["state"],
        nonce=started["nonce"],
        code_verifier=started["code_verifier"],
    )
    return LoginStart(url=started["url"], sealed_state=seal_login_state(settings, login))


async def finish_login(
    session: AsyncSession,
    passwords: Passwords,
    settings: Settings,
    provider: Provider,
    *,
    redirect_uri: str,
    sealed_state: str | None,
    code: str | None,
    state: str | None,
    error: str | None,
) -> str:
    """Check the provider's callback, find or create the account, and return a one-time code
    the frontend exchanges for tokens (`exchange_code`).

    OidcLoginFailed, with the reason, for anything short of a verified identity whose verified
    email belongs to an active account (or may open one). Nothing is stored then.
    """
    try:
        claims = await _verified_claims(
            provider,
            settings,
            redirect_uri=redirect_uri,
            sealed_state=sealed_state,
            code=code,
            state=state,
            error=error,
        )
        user, created = await _account(session, passwords, settings, claims)
    except OidcLoginFailed as failure:
        _log_failure(provider.name, failure)
        raise
    now = utcnow()
    await crud.delete_expired(session, now=now)
    login_code = secrets.token_urlsafe(32)
    await crud.add_code(
        session,
        user_id=user.id,
        code_hash=_hash_code(login_code),
        expires_at=now + timedelta(seconds=LOGIN_CODE_SECONDS),
    )
    log.info(
        "auth.oidc_login_succeeded",
        provider=provider.name,
        user_id=str(user.id),
        new_user=created,
    )
    return login_code


async def exchange_code(session: AsyncSession, settings: Settings, *, code: str) -> TokenPair:
    """Open a session for the user a one-time code was issued to; the code stops working.
    InvalidLoginCode when it is unknown, expired or used, or the account was deactivated."""
    user_id = await crud.use_code(session, _hash_code(code), now=utcnow())
    user = None if user_id is None else await users_service.find(session, user_id)
    if user is None:
        log.info("auth.oidc_login_failed", reason=Reason.INVALID_CODE.value)
        raise InvalidLoginCode()
    if not user.is_active:
        log.info("auth.oidc_login_failed", reason=Reason.INACTIVE_USER.value, user_id=str(user.id))
        raise InvalidLoginCode("Inactive user")
    return await auth_service.open_session(session, settings, user)


def _hash_code(code: str) -> str:
    # 256 random bits: a fast hash is enough, and a database dump holds no usable code.
    return hashlib.sha256(code.encode()).hexdigest()


def _log_failure(provider: str, failure: OidcLoginFailed) -> None:
    known = {} if failure.user_id is None else {"user_id": str(failure.user_id)}
    log.info(
        "auth.oidc_login_failed",
        provider=provider,
        reason=failure.reason.value,
        note=failure.note,
        **known,
    )


async def _metadata(provider: Provider) -> dict[str, Any]:
    try:
        metadata: dict[str, Any] = await provider.client.load_server_metadata()
    except _UNREACHABLE as error:
        raise OidcLoginFailed(
            Reason.PROVIDER_UNAVAILABLE, note=f"metadata: {type(error).__name__}"
        ) from error
    # OpenID Connect Discovery 4.3: the metadata must name the issuer it was fetched for, or
    # one provider could vouch for another's users.
    if metadata.get("issuer") != provider.config.issuer:
        raise OidcLoginFailed(Reason.PROVIDER_UNAVAILABLE, note="metadata names another issuer")
    missing = [name for name in _ENDPOINTS if not isinstance(metadata.get(name), str)]
    if missing:
        raise OidcLoginFailed(Reason.PROVIDER_UNAVAILABLE, note=f"metadata lacks {missing}")
    return metadata


async def _verified_claims(
    provider: Provider,
    settings: Settings,
    *,
    redirect_uri: str,
    sealed_state: str | None,
    code: str | None,
    state: str | None,
    error: str | None,
) -> dict[str, Any]:
    """The claims of the ID token the callback's code is exchanged for, once everything about
    the callback and the token checks out."""
    if error:
        reason = Reason.ACCESS_DENIED if error == "access_denied" else Reason.PROVIDER_ERROR
        raise OidcLoginFailed(reason, note=error[:100])
    login = unseal_login_state(settings, sealed_state)
    if login is None:
        raise OidcLoginFailed(Reason.INVALID_STATE, note="no valid state cookie")
    if (
        login.provider != provider.name
        or not state
        or not hmac.compare_digest(login.state.encode(), state.encode())
    ):
        raise OidcLoginFailed(Reason.INVALID_STATE, note="state differs from the cookie's")
    if not code:
        raise OidcLoginFailed(Reason.PROVIDER_ERROR, note="no code")
    await _metadata(provider)
    try:
        token = await provider.client.fetch_access_token(
            redirect_uri=redirect_uri, code=code, code_verifier=login.code_verifier
        )
    except OAuthError as refused:
        raise OidcLoginFailed(Reason.CODE_REJECTED, note=str(refused.error)[:100]) from refused
    except _UNREACHABLE as failed:
        raise OidcLoginFailed(
            Reason.PROVIDER_UNAVAILABLE, note=f"token: {type(failed).__name__}"
        ) from failed
    if not isinstance(token, dict) or not token.get("id_token"):
        raise OidcLoginFailed(Reason.INVALID_ID_TOKEN, note="no id_token")
    # authlib checks only `iss` unless told: the audience must be us (OpenID Connect Core
    # 3.1.3.7), and `sub` must be there. Fresh dicts: authlib consumes them.
    claims_options = {
        "iss": {"essential": True, "value": provider.config.issuer},
        "aud": {"essential": True, "value": provider.config.client_id},
        "sub": {"essential": True},
    }
    try:
        claims = await provider.client.parse_id_token(
            token,
            nonce=login.nonce,
            claims_options=claims_options,
            leeway=ID_TOKEN_LEEWAY_SECONDS,
        )
    except JoseError as invalid:
        raise OidcLoginFailed(
            Reason.INVALID_ID_TOKEN, note=f"{type(invalid).__name__}: {invalid}"[:200]
        ) from invalid
    except _UNREACHABLE as failed:
        raise OidcLoginFailed(
            Reason.PROVIDER_UNAVAILABLE, note=f"keys: {type(failed).__name__}"
        ) from failed
    return dict(claims)


async def _account(
    session: AsyncSession, passwords: Passwords, settings: Settings, claims: dict[str, Any]
) -> tuple[User, bool]:
    """The account whose email the provider verified, created if there is none (then True)."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise OidcLoginFailed(Reason.EMAIL_MISSING)
    # Only the provider's word that the address is the user's lets it stand for an account
    # that may have been registered here with a password.
    if claims.get("email_verified") is not True:
        raise OidcLoginFailed(Reason.EMAIL_NOT_VERIFIED)
    user = await users_service.find_by_email(session, email)
    created = user is None
    if user is None:
        if not settings.USERS_OPEN_REGISTRATION:
            raise OidcLoginFailed(Reason.SIGNUP_CLOSED)
        user = await _create_account(session, passwords, email=email, name=claims.get("name"))
    if not user.is_active:
        raise OidcLoginFailed(Reason.INACTIVE_USER, user_id=user.id)
    return user, created


async def _create_account(
    session: AsyncSession, passwords: Passwords, *, email: str, name: object
) -> User:
    """A new active, normal account.

    Its password is long, random and never shown: nobody can log in with it until they set one
    through password recovery. Should a concurrent sign-in create the account first, the unique
    email refuses this one (409, as for a sign-up).
    """
    full_name = name.replace("\x00", "")[:255] if isinstance(name, str) else None
    try:
        user_in = UserCreate(
            email=email, password=secrets.token_urlsafe(64), full_name=full_name or None
        )
    except ValidationError as invalid:
        raise OidcLoginFailed(Reason.EMAIL_MISSING, note="unusable email") from invalid
    return await users_service.create(session, passwords, user_in=user_in)
