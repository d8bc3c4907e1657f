"""The one HTTP rendering of every error: problem details (RFC 9457), and their OpenAPI."""

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.db_errors import is_unavailable
from app.core.errors import AppError
from app.core.headers import security_headers

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

# One schema in the document's components, which every error response refers to: inlined, it
# was repeated in each of ~150 responses (a third of the document, and one TypeScript type per
# operation and status in a generated client). `install_problem_schema` puts it there.
PROBLEM_SCHEMA_NAME = "Problem"
PROBLEM_SCHEMA_REF = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA_NAME}"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": PROBLEM_SCHEMA_NAME,
    "type": "object",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "`about:blank` or `urn:problem:<code>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a human"},
        "instance": {"type": "string"},
        "request_id": {"type": "string", "description": "Quote it when reporting a problem"},
        "errors": {
            "type": "array",
            "description": "Validation errors (422 only)",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, as problem+json (`Problem`)."""
    return {
        status: {
            "description": _title(status),
            "content": {PROBLEM_JSON: {"schema": dict(PROBLEM_SCHEMA_REF)}},
        }
        for status in statuses
    }


def install_problem_schema(app: FastAPI) -> None:
    """Add `Problem` to the components of the app's OpenAPI document. FastAPI only collects the
    schemas of pydantic models, and a `model` in `responses` would document it as
    application/json, so the generated document is completed here, once (FastAPI caches it)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # cached by FastAPI as app.openapi_schema: this same dict
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas[PROBLEM_SCHEMA_NAME] = PROBLEM_SCHEMA
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# RFC 9110's names, where Python 3.11's HTTPStatus still has the older ones.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _title(status: int) -> str:
    return _TITLES.get(status) or HTTPStatus(status).phrase


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem(
    request: Request,
    *,
    status: int,
    detail: str,
    type_: str = "about:blank",
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    request_id = request_id_of(request)
    body = {
        "type": type_,
        "title": title or _title(status),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id,
        **extra,
    }
    headers = dict(headers or {})
    if request_id:
        # The 500 handler runs outside our middleware, so echo the id here too.
        headers.setdefault("X-Request-ID", request_id)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem(
        request,
        status=exc.status_code,
        detail=exc.detail,
        type_=f"urn:problem:{exc.code}",
        title=exc.title,
        headers=exc.headers,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"No route matches {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if status == 405:
        detail = f"Method {request.method} is not allowed on {request.url.path}"
        # Starlette lists only the first route that matched the path; RFC 9110 wants them all.
        headers["Allow"] = ", ".join(_allowed_methods(request)) or headers.get("Allow", "")
    return problem(request, status=status, detail=detail, headers=headers)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app answers at this request's path."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
            if method == "GET":
                allowed.append("HEAD")  # app.core.headers answers HEAD wherever GET is served
    return allowed


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem(
        request,
        status=422,
        detail=f"The request is invalid: {summary}",
        type_="urn:problem:validation-error",
        errors=errors,
    )


def _database_error(
    *, status: int, code: str, detail: str, event: str, headers: dict[str, str] | None = None
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler for a SQLAlchemy error that reaches the edge: logged with the driver's message
    (never shown to the client), answered with a problem."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        log.warning(event, error=str(getattr(exc, "orig", exc)))
        return problem(
            request, status=status, detail=detail, type_=f"urn:problem:{code}", headers=headers
        )

    return handle


# Seconds a client should wait before retrying a request the database could not serve.
RETRY_AFTER_SECONDS = "1"

_unavailable = _database_error(
    status=503,
    code="database-unavailable",
    detail="The database is unavailable; retry later",
    event="db.unavailable",
    headers={"Retry-After": RETRY_AFTER_SECONDS},
)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not is_unavailable(exc):
        raise exc  # to the request log (with its traceback) and the 500 handler
    return await _unavailable(request, exc)


_DATABASE_ERRORS: list[tuple[type[Exception], Callable[[Request, Exception], Awaitable[Any]]]] = [
    # A unique or foreign-key constraint caught a race the feature's own check missed.
    (
        IntegrityError,
        _database_error(
            status=409,
            code="conflict",
            detail="The request conflicts with the current state of the data; retry or change it",
            event="db.integrity_error",
        ),
    ),
    # Optimistic locking (`version_id_col`): another request changed the row since this one
    # read it. Refusing keeps both from claiming success while one silently undoes the other.
    (
        StaleDataError,
        _database_error(
            status=409,
            code="concurrent-update",
            detail="It was changed by another request at the same time; reload it and retry",
            event="db.concurrent_update",
        ),
    ),
    # The database refused a value validation let through (out of range, bad encoding).
    (
        DataError,
        _database_error(
            status=422,
            code="unstorable-value",
            detail="A value in the request cannot be stored by the database",
            event="db.data_error",
        ),
    ),
    # Refused, reset, timed out, pool exhausted, shutting down, read-only, statement cancelled,
    # schema not migrated: it may succeed later (`is_unavailable`). Any other database error
    # is a bug: a 500, logged with its traceback.
    *(
        (error, _database_unavailable)
        for error in (DBAPIError, PoolTimeoutError, DisconnectionError)
    ),
]


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Logged with its traceback by the request middleware; the client sees no internals.
    # Rendered outside the app's middleware, so it adds their headers itself.
    headers = security_headers(https=request.url.scheme == "https")
    headers.append((b"cache-control", b"no-store"))
    return problem(
        request,
        status=500,
        detail="An unexpected error occurred; quote the request_id when reporting it",
        headers={name.decode(): value.decode() for name, value in headers},
    )


def install_error_handlers(app: FastAPI) -> None:
    install_problem_schema(app)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error, handler in _DATABASE_ERRORS:
        app.add_exception_handler(error, handler)
    app.add_exception_handler(Exception, _unexpected_error)
