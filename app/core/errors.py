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


class ConcurrentUpdate(Conflict):
    """A compare-and-set write found the row changed by another request since this one read it
    (`app.core.crud.update_versioned`); `current_version` is the version it has now."""

    code = "concurrent-update"
    detail = "It was changed by another request at the same time; reload it and retry"

    def __init__(self, current_version: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.current_version = current_version


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
