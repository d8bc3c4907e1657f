from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.core.deps import SessionDep
from app.core.errors import ServiceUnavailable
from app.core.problems import problem_responses

public_router = APIRouter(prefix="/utils", tags=["utils"])


@public_router.get("/health-check/", responses=problem_responses(503))
async def health_check(session: SessionDep) -> bool:
    """`true` when this instance can serve requests, database included."""
    try:
        await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as error:
        raise ServiceUnavailable("The database cannot be reached") from error
    return True
