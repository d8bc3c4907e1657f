from typing import Annotated, Any, get_args

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import EmailStr

from app.core import health
from app.core.config import Settings
from app.core.deps import SessionDep
from app.core.health import CheckState
from app.core.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, problem, problem_responses
from app.core.routing import FeatureRouter
from app.core.schemas import Message
from app.emails import service as emails_service
from app.users.deps import get_superuser
from app.utils.schemas import Liveness, Readiness

public_router = FeatureRouter(prefix="/utils", tags=["utils"])
router = FeatureRouter(prefix="/utils", tags=["utils"])


# A 503 of the probes: a problem that also names each check and its state.
_NOT_READY = problem_responses(503)
_NOT_READY[503]["content"][PROBLEM_JSON]["schema"] = {
    "allOf": [
        _NOT_READY[503]["content"][PROBLEM_JSON]["schema"],
        {
            "type": "object",
            "properties": {
                "checks": {
                    "type": "object",
                    "additionalProperties": {"enum": list(get_args(CheckState))},
                    "description": "Each dependency's state",
                }
            },
        },
    ]
}


async def _readiness(request: Request) -> dict[str, CheckState]:
    settings: Settings = request.app.state.settings
    return await health.readiness(
        request.app.state.sessionmaker,
        request.app.state.throttle,
        limit_seconds=settings.HEALTH_TIMEOUT_SECONDS,
    )


def _not_ready(request: Request, checks: dict[str, CheckState]) -> JSONResponse:
    failed = ", ".join(f"{name}: {state}" for name, state in checks.items() if state != "ok")
    return problem(
        request,
        status=503,
        detail=f"Not ready ({failed}); retry later",
        type_="urn:problem:not-ready",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        checks=checks,
    )


@public_router.get("/health-check/", responses=_NOT_READY)
async def health_check(request: Request) -> Any:
    """`true` when the database can serve requests (the full-stack template's check);
    otherwise 503 with `Retry-After`."""
    settings: Settings = request.app.state.settings
    checks: dict[str, CheckState] = {
        "database": await health.database_state(
            request.app.state.sessionmaker, limit_seconds=settings.HEALTH_TIMEOUT_SECONDS
        )
    }
    if any(state != "ok" for state in checks.values()):
        return _not_ready(request, checks)
    return True


@public_router.get("/live/", response_model=Liveness)
async def live() -> Liveness:
    """Liveness: the process serves requests. Asks no dependency, so a database outage never
    makes an orchestrator restart a healthy process."""
    return Liveness()


@public_router.get("/ready/", response_model=Readiness, responses=_NOT_READY)
async def ready(request: Request) -> Any:
    """Readiness: the database (and Redis, when configured) answer, each named in `checks`;
    otherwise 503 with `Retry-After`, still naming each check and its state. Each check waits
    at most `HEALTH_TIMEOUT_SECONDS`."""
    checks = await _readiness(request)
    if any(state != "ok" for state in checks.values()):
        return _not_ready(request, checks)
    return Readiness(checks=checks)


@router.post(
    "/test-email/",
    status_code=201,
    response_model=Message,
    dependencies=[Depends(get_superuser)],
)
async def test_email(email_to: Annotated[EmailStr, Query()], session: SessionDep) -> Message:
    """Queue a test email to `email_to`; the sender delivers it (or logs it, without SMTP)."""
    await emails_service.enqueue(session, kind=emails_service.TEST_EMAIL, recipient=email_to)
    return Message(message="Test email sent")
