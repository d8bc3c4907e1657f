"""Pieces every feature's request and response bodies share."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

# PostgreSQL text cannot hold NUL, SQLite can: stored strings refuse it at the edge, on every
# backend alike, and the published schema says so (found by `make contract` on PostgreSQL).
NO_NUL = r"^[^\x00]*$"


class RequestBody(BaseModel):
    """Unknown fields are rejected (422), so a client that sends `is_superuser` where it is not
    accepted learns that, instead of believing it worked."""

    model_config = ConfigDict(extra="forbid")


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def omittable() -> Any:
    """A field of a partial update that may be left out, but not sent as null.

    Declared with its non-null type (`email: Email = omittable()`), so null fails validation and
    the OpenAPI schema does not offer it; read such bodies with `model_dump(exclude_unset=True)`.
    """
    return Field(default=None, json_schema_extra=_no_default)


class Message(BaseModel):
    message: str
