"""Builds the app: settings -> logging -> middleware -> error handlers -> routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError, ProgrammingError

from app import features
from app.core.config import API_V1_PREFIX, DEV_SECRET_KEY, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.limits import BodySizeLimitMiddleware, refuse_control_characters_in_path
from app.core.logging import REQUEST_ID_HEADER, RequestContextMiddleware, setup_logging
from app.core.problems import install_error_handlers, problem_responses
from app.core.throttle import Throttle
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
        try:
            await create_first_superuser(app.state.sessionmaker, app.state.settings)
        except (OperationalError, ProgrammingError) as error:
            log.error(
                "startup.database_unusable",
                hint="is DATABASE_URL reachable and migrated (`make migrate`)?",
                error=str(error.orig),
            )
            raise
        async with anyio.create_task_group() as tasks:
            if settings.EMAIL_SENDER:
                sender = EmailSender(app.state.sessionmaker, settings, features.mail_composers())
                tasks.start_soon(sender.run)
            yield
            tasks.cancel_scope.cancel()
        await engine.dispose()
        await app.state.throttle.aclose()

    app = FastAPI(
        title=settings.PROJECT_NAME,
        generate_unique_id_function=_operation_id,
        openapi_url=f"{API_V1_PREFIX}/openapi.json",
        docs_url="/docs",
        lifespan=lifespan,
        dependencies=[Depends(refuse_control_characters_in_path)],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.throttle = Throttle(settings)

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
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    # Added last, so it is outermost: CORS preflights get an id and a log line too.
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)

    for router, public in features.routers():
        if public:
            app.include_router(
                router, prefix=API_V1_PREFIX, responses=problem_responses(400, 404, 422)
            )
        else:
            app.include_router(
                router,
                prefix=API_V1_PREFIX,
                dependencies=[Depends(get_current_user)],
                responses=problem_responses(400, 401, 403, 404, 422),
            )
    return app
