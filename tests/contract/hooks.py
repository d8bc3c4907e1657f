"""Schemathesis hooks of the contract run, imported by schemathesis (`hooks` in schemathesis.toml).

1. Emails. `format: email` in the schema admits any syntactically valid address, and schemathesis
   draws some at special-use domains (`x@a.test`, ...). The app rejects those on purpose, with a
   422 (README: "reserved domains such as `.test` and `.localhost` are rejected"), so the
   `positive_data_acceptance` check would report a documented decision. Positive emails are drawn
   from the example.com/.org/.net domains instead (RFC 2606: reserved for documentation, yet not
   special-use, so they are valid addresses). Negative data is untouched: schemathesis builds
   invalid emails by other means.

2. The superuser's own password. Its token is the run's credential, and `PATCH /users/{user_id}`
   on its own id with a `password` would change its password and so revoke that token: every
   later request would be a 401. Such a request is sent without the `password` field (schemathesis
   re-checks the case afterwards, so its positive/negative label stays right). `PATCH
   /users/me/password` and `DELETE /users/me` are sent as throwaway users instead; see
   schemathesis.toml.

3. `confirm_password`. That it equals the password it confirms is a rule between two fields,
   which the schema cannot state; a drawn confirmation almost never matches, and the app's 422
   would be reported as a valid request refused. It is sent equal to the password (`password` or
   `new_password`), or left out where no password is sent.

4. `Idempotency-Key`. Schemathesis draws few keys and sends each with many bodies; the same key
   with another body is a documented 422 (tests/idempotency prove it), which
   `positive_data_acceptance` would report. A well-formed key is sent made unique to its body (a
   hash of both, still a well-formed key), so a repeated case is a true retry, and is replayed.
   Malformed keys are left as they are, for `negative_data_rejection`. In the stateful phase a
   create is followed by reads and deletes of what it made; a replay there would answer with a
   resource deleted earlier in the run (a documented replay, reported as "created resource not
   found"), so each stateful create gets a key of its own.

5. `If-Match`. A drawn entity tag is almost never the current one, so nearly every write that
   carries one would end at the documented 412 (schemathesis.toml accepts it) and its body would
   go untested. Two in three are sent as `*` (any current version) instead, so the writes
   themselves are fuzzed too; the others still reach the 412.

6. `cursor`. A drawn string is almost never a cursor the API gave out, and the app refuses it
   with a documented 422 (README, Lists), as it does `cursor` with `skip` > 0. A cursor within
   the schema's length is sent as a real cursor made from it (a time and an id hashed from the
   drawn string), without `skip`, so the keyset path is fuzzed too; longer ones are left as they
   are, for `negative_data_rejection`.

7. Long query values. The server refuses request headers over `MAX_REQUEST_HEADER_BYTES` (32 KiB)
   with a 431 before any route sees it (app/core/protocol.py), and no operation documents that.
   Drawn 4-byte characters, percent-encoded, reach that size within a `maxLength` of 4,096. A
   value over 8 KiB encoded is sent as ASCII of its length (cut to 4,097, still longer than any
   `maxLength`), so it tests the route's own checks, positive or negative as drawn.
"""

import hashlib
import json
import os
import re
import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import schemathesis
from hypothesis import strategies as st
from schemathesis.generation.meta import TestPhase

from app.core.pagination import CURSOR_MAX_LENGTH, encode_cursor

IDEMPOTENCY_KEY = "Idempotency-Key"
LONG_QUERY_VALUE_BYTES = 8 * 1024
LONGEST_MAX_LENGTH = 4096
IF_MATCH = "If-Match"
# What the app accepts (app/idempotency/deps.py): 1 to 255 printable ASCII characters.
_WELL_FORMED_KEY = re.compile(r"[\x20-\x7e]{1,255}")

# Set by run.py for the run whose credential is the superuser's token.
SUPERUSER_ID_VARIABLE = "CONTRACT_SUPERUSER_ID"

EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
# Every character an unquoted (dot-atom) local part may carry: what trips naive parsers.
_LOCAL_PART = string.ascii_lowercase + string.digits + "!#$%&'*+-/=?^_`{|}~"
_LABEL = string.ascii_lowercase + string.digits


def email_addresses() -> st.SearchStrategy[str]:
    """`local@label.example.com` and the like: valid, and deliverable in form."""
    return st.builds(
        "{}@{}.{}".format,
        st.text(alphabet=_LOCAL_PART, min_size=1, max_size=10),
        st.text(alphabet=_LABEL, min_size=1, max_size=8),
        st.sampled_from(EMAIL_DOMAINS),
    )


schemathesis.openapi.format("email", email_addresses())


def _real_cursor(drawn: str) -> str:
    """A cursor as the API gives them out, the same one for the same drawn string."""
    digest = hashlib.sha256(drawn.encode()).digest()
    when = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=int.from_bytes(digest[:6]))
    return encode_cursor(when, uuid.UUID(bytes=digest[:16]))


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    superuser_id = os.environ.get(SUPERUSER_ID_VARIABLE)
    if (
        superuser_id
        and case.method.upper() == "PATCH"
        and case.operation.path.endswith("/users/{user_id}")
        and str((case.path_parameters or {}).get("user_id", "")).lower() == superuser_id
        and isinstance(case.body, dict)
    ):
        case.body.pop("password", None)
    if isinstance(case.body, dict) and "confirm_password" in case.body:
        confirmed = case.body.get("new_password", case.body.get("password"))
        if isinstance(confirmed, str):
            case.body["confirm_password"] = confirmed
        else:
            case.body.pop("confirm_password")
    key = case.headers.get(IDEMPOTENCY_KEY) if case.headers else None
    if case.headers and isinstance(key, str) and _WELL_FORMED_KEY.fullmatch(key.strip()):
        body = json.dumps(case.body, sort_keys=True, default=str)
        if case.meta is not None and case.meta.phase.name == TestPhase.STATEFUL:
            body += uuid.uuid4().hex
        case.headers[IDEMPOTENCY_KEY] = hashlib.sha256(f"{key}\0{body}".encode()).hexdigest()
    if_match = case.headers.get(IF_MATCH) if case.headers else None
    if case.headers and isinstance(if_match, str) and len(if_match) % 3 != 0:
        case.headers[IF_MATCH] = "*"
    cursor = case.query.get("cursor") if case.query else None
    if case.query and isinstance(cursor, str) and len(cursor) <= CURSOR_MAX_LENGTH:
        case.query["cursor"] = _real_cursor(cursor)
        case.query.pop("skip", None)
    for name, value in (case.query or {}).items():
        if isinstance(value, str) and len(quote(value.encode())) > LONG_QUERY_VALUE_BYTES:
            case.query[name] = "x" * min(len(value), LONGEST_MAX_LENGTH + 1)
