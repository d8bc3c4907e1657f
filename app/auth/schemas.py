from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from app.core.schemas import RequestBody


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    """Seconds until the access token expires."""
    refresh_token: str | None = None
    """Exchange it at `POST /login/refresh` for a new pair; absent in cookie mode (it is in an
    HttpOnly cookie then)."""


class RefreshRequest(RequestBody):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    """The refresh token; leave it out in cookie mode (it comes in the cookie)."""
