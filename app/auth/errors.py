from app.core.errors import AppError


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
