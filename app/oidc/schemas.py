from typing import Annotated

from pydantic import StringConstraints

from app.core.schemas import RequestBody


class CodeExchange(RequestBody):
    code: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """The `code` of the frontend's `/login/oidc?code=...` page."""
