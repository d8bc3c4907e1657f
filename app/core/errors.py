"""The errors features raise on purpose. No HTTP here: `app.core.problems` renders them."""


class AppError(Exception):
    """Base of every error a feature raises on purpose.

    Subclasses set `status_code`, a short `title`, a stable `code` (rendered as the problem
    `type`, `urn:problem:<code>`) and a default human `detail`; raising with a message overrides
    the detail.
    """

    status_code: int = 400
    title: str = "Bad Request"
    code: str = "bad-request"
    detail: str = "The request cannot be processed"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str | None = None) -> None:
        if detail is not None:
            self.detail = detail
        super().__init__(self.detail)


class NotFound(AppError):
    status_code = 404
    title = "Not Found"
    code = "not-found"
    detail = "The resource does not exist"


class Conflict(AppError):
    status_code = 409
    title = "Conflict"
    code = "conflict"
    detail = "The request conflicts with existing data"


class Forbidden(AppError):
    status_code = 403
    title = "Forbidden"
    code = "forbidden"
    detail = "You are not allowed to do this"


class Unauthorized(AppError):
    status_code = 401
    title = "Unauthorized"
    code = "unauthorized"
    detail = "Not authenticated"
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}  # noqa: RUF012


class ServiceUnavailable(AppError):
    status_code = 503
    title = "Service Unavailable"
    code = "service-unavailable"
    detail = "The service cannot serve requests right now"
