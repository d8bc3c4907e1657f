"""Request and response bodies of the users feature."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from app.core.schemas import NotNull, RequestBody

# email-validator already caps the length at 254 characters.
Email = Annotated[EmailStr, AfterValidator(str.lower)]
Password = Annotated[str, Field(min_length=8, max_length=128)]
FullName = Annotated[str, Field(max_length=255)]


class UserRegister(RequestBody):
    email: Email
    password: Password
    full_name: FullName | None = None


class UserCreate(UserRegister):
    """What a superuser may set when creating an account."""

    is_active: bool = True
    is_superuser: bool = False


class UserUpdateMe(RequestBody):
    email: Annotated[Email | None, NotNull] = None
    full_name: FullName | None = None


class UserUpdate(RequestBody):
    """A superuser's partial update of any account; only the fields sent change."""

    email: Annotated[Email | None, NotNull] = None
    password: Annotated[Password | None, NotNull] = None
    full_name: FullName | None = None
    is_active: Annotated[bool | None, NotNull] = None
    is_superuser: Annotated[bool | None, NotNull] = None


class UpdatePassword(RequestBody):
    current_password: Annotated[str, Field(max_length=128)]
    new_password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime


class UsersPage(BaseModel):
    data: list[UserRead]
    count: int
