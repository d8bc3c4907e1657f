from typing import Literal

from pydantic import BaseModel, Field

from app.core.health import CheckState


class Liveness(BaseModel):
    """The process serves requests."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Every dependency of this instance answers: it can serve requests."""

    status: Literal["ok"] = "ok"
    checks: dict[str, CheckState] = Field(
        description="Each dependency's state: `database`, and `redis` when `REDIS_URL` is set",
        examples=[{"database": "ok", "redis": "ok"}],
    )
