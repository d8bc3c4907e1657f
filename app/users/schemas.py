"""Request and response bodies of the users feature."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StrictBool

from app.core.pagination import Page
from app.core.schemas import NO_NUL, RequestBody, omittable

# email-validator caps the length at 254 characters and rejects special-use domains (.test,
# .localhost, .invalid ...) that can never receive mail. Stored lower-cased.
Email = Annotated[
    EmailStr,
    AfterValidator(str.lower),
    Field(description="An address that can receive mail; compared case-insensitively"),
]
Password = Annotated[str, Field(min_length=8, max_length=128)]
FullName = Annotated[str, Field(max_length=255, pattern=NO_NUL)]


class UserRegister(RequestBody):
    email: Email
    password: Password
    full_name: FullName | None = None


class UserCreate(UserRegister):
    """What a superuser may set when creating an account."""

    # Strict: `0` or `"false"` for a privilege flag is a client bug worth a 422, not a guess.
    is_active: StrictBool = True
    is_superuser: StrictBool = False


class UserUpdateMe(RequestBody):
    email: Email = omittable()
    full_name: FullName | None = None


class UserUpdate(RequestBody):
    """A superuser's partial update of any account; only the fields sent change."""

    email: Email = omittable()
    password: Password = omittable()
    full_name: FullName | None = None
    is_active: StrictBool = omittable()
    is_superuser: StrictBool = omittable()


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


class UsersPage(Page[UserRead]):
    pass
