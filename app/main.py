"""Builds the app: settings -> logging -> middleware -> error handlers -> routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from app import features
from app.core.config import API_V1_PREFIX, DEV_SECRET_KEY, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.docs import DOCS_CSP, install_docs
from app.core.headers import ResponseHeadersMiddleware
from app.core.limits import RequestLimitsMiddleware
from app.core.logging import REQUEST_ID_HEADER, RequestContextMiddleware, setup_logging
from app.core.metrics import DatabaseGauge, install_metrics
from app.core.problems import install_error_handlers, problem_responses
from app.core.routing import UnitOfWorkRoute, include_feature_router
from app.core.shutdown import AnswerCancelledRequests
from app.core.startup import run_when_database_ready
from app.core.throttle import Throttle
from app.emails import service as emails_service
from app.emails.service import EmailSender
from app.users.deps import get_current_user
from app.users.service import create_first_superuser

log = structlog.get_logger(__name__)


def _operation_id(route: APIRoute) -> str:
    # The full-stack template's scheme (`items-read_items`), so a TypeScript client generated
    # from this API has the same method names as one generated from the template.
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging(settings)

    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.SECRET_KEY == DEV_SECRET_KEY:
            log.warning("config.dev_secret_key", hint="set SECRET_KEY outside development")
        async with anyio.create_task_group() as tasks:
            # Tried once before serving, then in the background until the database is reachable
            # and migrated: the app serves meanwhile (503 on the routes that need it).
            superuser = partial(create_first_superuser, app.state.sessionmaker, app.state.settings)
            await tasks.start(run_when_database_ready, "first_superuser", superuser)
            if settings.EMAIL_SENDER:
                sender = EmailSender(app.state.sessionmaker, settings, features.mail_composers())
                tasks.start_soon(sender.run)
            yield
            tasks.cancel_scope.cancel()
        await engine.dispose()
        await app.state.throttle.aclose()
        if app.state.tracing is not None:
            await anyio.to_thread.run_sync(app.state.tracing.shutdown)  # sends the last spans

    app = FastAPI(
        title=settings.PROJECT_NAME,
        generate_unique_id_function=_operation_id,
        # Off in production unless DOCS_ENABLED: then the document and the pages are 404s.
        openapi_url=f"{API_V1_PREFIX}/openapi.json" if settings.docs_enabled else None,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN: install_docs serves ours below.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    # Routes added to the app itself (tests, extensions) get a unit of work like the features'.
    app.router.route_class = UnitOfWorkRoute
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.throttle = Throttle(settings)
    app.state.tracing = None

    if settings.BACKEND_CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.BACKEND_CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            # A browser client reads these (app.core.preconditions, app.idempotency.deps).
            expose_headers=[REQUEST_ID_HEADER, "ETag", "Idempotent-Replayed"],
        )
    app.add_middleware(RequestLimitsMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    # Inside the headers middleware, so its 503 carries them too.
    app.add_middleware(AnswerCancelledRequests)
    app.add_middleware(
        ResponseHeadersMiddleware, page_csp=DOCS_CSP if settings.docs_enabled else {}
    )
    # Added last, so it is outermost: CORS preflights get an id and a log line too.
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)

    routers = list(features.routers())
    for router, public in routers:
        if public:
            include_feature_router(
                app, router, prefix=API_V1_PREFIX, responses=problem_responses(400, 404, 422)
            )
        else:
            include_feature_router(
                app,
                router,
                prefix=API_V1_PREFIX,
                dependencies=[Depends(get_current_user)],
                responses=problem_responses(400, 401, 403, 404, 422),
            )
    if app.openapi_url:
        # After the API's routes, so that no API request tries the docs' first.
        install_docs(app, openapi_url=app.openapi_url)

    # After the routes (their series are created up front) and the other middleware (so the
    # request metrics time all of it).
    if settings.METRICS_ENABLED:

        async def emails_pending() -> int:
            return await emails_service.count_pending(app.state.sessionmaker)

        install_metrics(
            app,
            engine,
            [
                DatabaseGauge(
                    "emails_pending",
                    "Emails in the outbox not yet sent, of every instance (read from the "
                    "database at scrape time, at most once per METRICS_DB_MAX_AGE_SECONDS).",
                    emails_pending,
                )
            ],
            [(API_V1_PREFIX, router.routes) for router, _ in routers],
        )
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        # Imported only here: without an endpoint no OpenTelemetry module is ever loaded.
        from app.core.tracing import Tracing

        app.state.tracing = Tracing(app, engine, settings)
    return app
