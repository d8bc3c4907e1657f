"""Request and response bodies of the users feature."""

import uuid
from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)

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
ConfirmPassword = Annotated[
    str | None,
    Field(max_length=128, description="Optional; when sent, it must equal the new password"),
]


class ConfirmsPassword(RequestBody):
    """A body with a new password may carry the `confirm_password` the full-stack template's
    forms send. Optional; when sent, it must equal the password it confirms, or the 422 names
    it. Each body declares `confirm_password` after the field it confirms (`_confirms`)."""

    _confirms: ClassVar[str] = "password"

    @field_validator("confirm_password", check_fields=False)
    @classmethod
    def _matches(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or cls._confirms not in info.data:
            return value  # not sent, or the password itself is invalid and says so
        password = info.data[cls._confirms]
        if password is None and value == "":
            return value  # an optional password left empty, and its empty confirmation
        if value != password:
            raise ValueError("The passwords don't match")
        return value


class UserRegister(ConfirmsPassword):
    email: Email
    password: Password
    confirm_password: ConfirmPassword = None
    full_name: FullName | None = None


class UserCreate(UserRegister):
    """What a superuser may set when creating an account."""

    # Strict: `0` or `"false"` for a privilege flag is a client bug worth a 422, not a guess.
    is_active: StrictBool = True
    is_superuser: StrictBool = False


class UserUpdateMe(RequestBody):
    email: Email = omittable()
    full_name: FullName | None = None


class UserUpdate(ConfirmsPassword):
    """A superuser's partial update of any account; only the fields sent change."""

    email: Email = omittable()
    password: Password = omittable()
    confirm_password: ConfirmPassword = None
    full_name: FullName | None = None
    is_active: StrictBool = omittable()
    is_superuser: StrictBool = omittable()


class UpdatePassword(ConfirmsPassword):
    _confirms = "new_password"

    current_password: Annotated[str, Field(max_length=128)]
    new_password: Password
    confirm_password: ConfirmPassword = None


class NewPassword(ConfirmsPassword):
    """A password reset: the token from the recovery email, and the new password."""

    _confirms = "new_password"

    token: Annotated[str, Field(min_length=1, max_length=2048)]
    new_password: Password
    confirm_password: ConfirmPassword = None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime


class UsersPublic(Page[UserPublic]):
    pass
