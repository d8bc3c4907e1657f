import uuid
from enum import StrEnum

from app.core.errors import AppError, NotFound


class Reason(StrEnum):
    """Why a sign-in through a provider failed: the `error` the frontend's `/login` page gets,
    and the `reason` of the `auth.oidc_login_failed` log line."""

    ACCESS_DENIED = "access_denied"
    """The user declined at the provider."""
    PROVIDER_ERROR = "provider_error"
    """The provider answered the authorization request with another error, or without a code."""
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    """Its metadata or keys could not be read, or they contradict its settings."""
    INVALID_STATE = "invalid_state"
    """The callback's `state` is not the one this browser was sent with (or the sign-in took
    longer than the state cookie lives)."""
    CODE_REJECTED = "code_rejected"
    """The provider refused to exchange its authorization code (used, expired, PKCE)."""
    INVALID_ID_TOKEN = "invalid_id_token"  # noqa: S105 - a reason, not a secret
    """The ID token's signature, issuer, audience, expiry or nonce is wrong."""
    EMAIL_MISSING = "email_missing"
    """The provider gave no (usable) email address."""
    EMAIL_NOT_VERIFIED = "email_not_verified"
    """The provider does not vouch for the address (`email_verified` is not true)."""
    INACTIVE_USER = "inactive_user"
    """The account with this address is deactivated."""
    SIGNUP_CLOSED = "signup_closed"
    """No account has this address, and `USERS_OPEN_REGISTRATION` is off."""
    INVALID_CODE = "invalid_code"
    """The one-time code sent to `POST /login/oidc/token` is unknown, expired or used (a 400
    problem, not a redirect)."""


class OidcLoginFailed(AppError):
    """A sign-in through a provider failed. The callback turns it into a redirect to the
    frontend's `/login?error=<reason>`; it is a problem (400) only if it escapes elsewhere."""

    code = "oidc-login-failed"
    detail = "Signing in with the identity provider failed"

    def __init__(
        self, reason: Reason, *, note: str | None = None, user_id: uuid.UUID | None = None
    ) -> None:
        super().__init__(f"Signing in with the identity provider failed: {reason}")
        self.reason = reason
        self.note = note
        """What exactly went wrong, for the log (never a token or code)."""
        self.user_id = user_id
        """The account concerned, when it is known."""


class UnknownProvider(NotFound):
    code = "unknown-oidc-provider"
    detail = "No OpenID Connect provider has this name"


class InvalidLoginCode(AppError):
    code = "invalid-login-code"
    detail = "The login code is unknown, expired or already used: sign in again"
