"""Request and response bodies of the items feature."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.core.pagination import Page
from app.core.schemas import NO_NUL, RequestBody, omittable

# Checked as sent, not trimmed first: trimming made the app accept 256 characters and refuse
# "   " against its own published schema (found by `make contract`).
Title = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)]


class ItemCreate(RequestBody):
    title: Title
    description: Description | None = None


class ItemReplace(ItemCreate):
    """PUT: the whole item; a description left out becomes null."""


class ItemUpdate(RequestBody):
    """PATCH: only the fields sent change."""

    title: Title = omittable()
    description: Description | None = None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str | None
    owner_id: uuid.UUID
    created_at: datetime


class ItemsPublic(Page[ItemPublic]):
    pass
