from app.core.errors import AppError, Conflict, Forbidden, NotFound


class UserNotFound(NotFound):
    code = "user-not-found"
    detail = "The user does not exist"


class EmailAlreadyRegistered(Conflict):
    code = "email-already-registered"
    detail = "The user with this email already exists in the system"


class InactiveUser(Forbidden):
    code = "inactive-user"
    detail = "Inactive user"


class NotSuperuser(Forbidden):
    code = "not-superuser"
    detail = "The user doesn't have enough privileges"


class RegistrationClosed(Forbidden):
    code = "registration-closed"
    detail = "Open registration is disabled on this server"


class IncorrectPassword(AppError):
    code = "incorrect-password"
    detail = "Incorrect password"


class PasswordUnchanged(AppError):
    code = "password-unchanged"
    detail = "New password cannot be the same as the current one"


class CannotChangeSelf(Forbidden):
    """A superuser may not delete, deactivate or demote themself: the server could be left with
    no administrator at all."""

    code = "cannot-change-self"
