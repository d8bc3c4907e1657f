"""Pieces every feature's request and response bodies share."""

from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class RequestBody(BaseModel):
    """Unknown fields are rejected (422), so a client that sends `is_superuser` where it is not
    accepted learns that, instead of believing it worked."""

    model_config = ConfigDict(extra="forbid")


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


# For partial updates of non-nullable columns: the field may be absent, but not null.
NotNull = BeforeValidator(_reject_null)


class Message(BaseModel):
    message: str
