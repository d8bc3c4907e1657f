"""The cursor format of `app.core.pagination`: generic, versioned, and strict when read."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.core.pagination import CURSOR_VERSION, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "values",
    [
        (datetime(2026, 11, 27, 21, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()),
        (42, 'a title, with ünïcode and "quotes"', uuid.UUID(int=0)),
        (-1,),
    ],
)
def test_a_cursor_gives_back_the_values_it_was_made_of(values: tuple[object, ...]) -> None:
    cursor = encode_cursor(*values)
    assert decode_cursor(cursor) == values
    # Safe in a query string as it is.
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_cursor_says_its_version() -> None:
    cursor = encode_cursor(1)
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert payload == {"v": CURSOR_VERSION, "k": [["i", "1"]]}


def test_times_keep_their_instant_whatever_their_zone() -> None:
    local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    (decoded,) = decode_cursor(encode_cursor(local))
    assert decoded == local
    assert isinstance(decoded, datetime)
    assert decoded.utcoffset() is not None


@pytest.mark.parametrize(
    "value", [datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None), True, 1.5, None, b"x"]
)
def test_values_a_cursor_cannot_hold_are_refused_when_made(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_cursor(value)
