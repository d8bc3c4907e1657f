from app.core.errors import AppError, Unauthorized


class IncorrectCredentials(AppError):
    # RFC 6749 §5.2: a failed password grant is 400 invalid_grant, not 401.
    code = "invalid-grant"
    detail = "Incorrect email or password"


class InactiveUserLogin(AppError):
    code = "inactive-user"
    detail = "Inactive user"


class InvalidResetToken(AppError):
    code = "invalid-reset-token"
    detail = "Invalid token"


class InvalidRefreshToken(Unauthorized):
    code = "invalid-refresh-token"
    detail = "Invalid refresh token"
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}  # noqa: RUF012


class CsrfFailed(AppError):
    status_code = 403
    title = "Forbidden"
    code = "csrf-failed"
    detail = "A refresh by cookie needs the X-CSRF-Token header to equal the csrf_token cookie"
