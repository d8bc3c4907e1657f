from app.core.errors import AppError, Forbidden


class IncorrectCredentials(AppError):
    # RFC 6749 §5.2: a failed password grant is 400 invalid_grant, not 401.
    code = "invalid-grant"

    def __init__(self) -> None:
        super().__init__("Incorrect email or password")


class InactiveUser(Forbidden):
    code = "inactive-user"

    def __init__(self) -> None:
        super().__init__("Inactive user")


class InactiveUserLogin(AppError):
    code = "inactive-user"

    def __init__(self) -> None:
        super().__init__("Inactive user")


class NotSuperuser(Forbidden):
    code = "not-superuser"

    def __init__(self) -> None:
        super().__init__("The user doesn't have enough privileges")
