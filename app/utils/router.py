from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import EmailStr
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.core.deps import SessionDep
from app.core.errors import ServiceUnavailable
from app.core.problems import problem_responses
from app.core.schemas import Message
from app.emails import service as emails_service
from app.users.deps import get_superuser

public_router = APIRouter(prefix="/utils", tags=["utils"])
router = APIRouter(prefix="/utils", tags=["utils"])


@public_router.get("/health-check/", responses=problem_responses(503))
async def health_check(session: SessionDep) -> bool:
    """`true` when this instance can serve requests, database included."""
    try:
        await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as error:
        raise ServiceUnavailable("The database cannot be reached") from error
    return True


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
