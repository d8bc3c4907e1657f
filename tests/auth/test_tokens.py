"""Every way a bearer token can be wrong is a 401 with `WWW-Authenticate: Bearer`."""

import base64
import json
import time
import uuid
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.security import InvalidTokenError, credential_fingerprint, decode_access_token
from app.users.models import User, UserSession
from tests.conftest import TEST_SECRET, auth_headers
from tests.helpers import assert_problem, assert_unauthorized, change_password, login
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user: User, session_id: str, settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "cred": credential_fingerprint(user.hashed_password, settings),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "type": "access",
        "sid": session_id,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
async def sid(session: AsyncSession, user: User) -> str:
    """An open session of `user`, for the tokens these tests sign by hand."""
    user_session = UserSession(user_id=user.id)
    session.add(user_session)
    await session.flush()
    return str(user_session.id)


def _sign(claims: dict[str, Any], *, alg: str = "HS256", secret: str = TEST_SECRET) -> str:
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(secret), algorithms=[alg])


async def _me(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


async def test_a_well_formed_token_is_accepted(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings
) -> None:
    # The positive control for the forgeries below.
    assert (await _me(client, _sign(_claims(user, sid, settings)))).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"type": "refresh"}, id="wrong-type"),
        pytest.param({"type": None}, id="no-type"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"jti": None}, id="no-jti"),
        pytest.param({"sub": None}, id="no-sub"),
        pytest.param({"sub": "not-a-uuid"}, id="sub-not-uuid"),
        pytest.param({"sub": 42}, id="sub-not-string"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),
        pytest.param({"cred": None}, id="no-credential"),
        pytest.param({"cred": "stale-credential"}, id="stale-credential"),
        pytest.param({"sid": None}, id="no-session"),
        pytest.param({"sid": str(uuid.uuid4())}, id="unknown-session"),
        pytest.param({"sid": "not-a-uuid"}, id="session-not-uuid"),
    ],
)
async def test_bad_claims_are_rejected(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings, overrides: dict[str, Any]
) -> None:
    body = assert_unauthorized(await _me(client, _sign(_claims(user, sid, settings, **overrides))))
    assert body["detail"] == "Could not validate credentials"


async def test_token_signed_with_another_key_is_rejected(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings
) -> None:
    token = _sign(_claims(user, sid, settings), secret="another-secret-key-of-thirty-two-bytes!!")
    assert_unauthorized(await _me(client, token))


async def test_hs384_is_rejected_even_with_the_right_key(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings
) -> None:
    assert_unauthorized(await _me(client, _sign(_claims(user, sid, settings), alg="HS384")))


async def test_alg_none_is_rejected(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings
) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user, sid, settings))}."
    assert_unauthorized(await _me(client, token))


async def test_tampered_payload_is_rejected(
    client: httpx2.AsyncClient, user: User, sid: str, settings: Settings
) -> None:
    header, _, signature = _sign(_claims(user, sid, settings)).split(".")
    forged = _b64(_claims(user, sid, settings, sub=str(uuid.uuid4())))
    assert_unauthorized(await _me(client, f"{header}.{forged}.{signature}"))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not.a.jwt", "Bearer !!!!", "Basic dXNlcjpwYXNz", "Bearer a.b"],
)
async def test_malformed_authorization_is_401(
    client: httpx2.AsyncClient, authorization: str
) -> None:
    response = await client.get("/users/me", headers={"Authorization": authorization})
    assert_unauthorized(response)


async def test_token_of_a_deleted_user_is_rejected(
    client: httpx2.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    gone = await UserFactory.persist(session)
    headers = await auth_headers(session, gone, settings)
    await session.delete(gone)
    await session.flush()
    assert_unauthorized(await client.get("/users/me", headers=headers))


async def test_token_of_a_deactivated_user_is_forbidden(
    client: httpx2.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    inactive = await UserFactory.persist(session, is_active=False)
    body = assert_problem(
        await client.get("/users/me", headers=(await auth_headers(session, inactive, settings))),
        403,
    )
    assert body["detail"] == "Inactive user"


async def test_changing_the_password_ends_existing_sessions(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, DEFAULT_PASSWORD, "fresh-password-1")
    assert response.status_code == 200

    assert_unauthorized(await client.get("/users/me", headers=user_headers))
    token = (await login(client, user.email, "fresh-password-1")).json()["access_token"]
    assert (await _me(client, token)).status_code == 200


async def test_a_password_reset_by_a_superuser_ends_the_user_s_sessions(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    response = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={"password": "reset-by-admin-1"}
    )
    assert response.status_code == 200
    assert_unauthorized(await client.get("/users/me", headers=user_headers))


async def test_a_token_that_was_accepted_is_refused_once_it_expires(
    client: httpx2.AsyncClient,
    user: User,
    sid: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Verified tokens are kept (app.core.security): a repeat must still check `exp`.
    now = int(time.time())
    token = _sign(_claims(user, sid, settings, iat=now, exp=now + 60))
    assert (await _me(client, token)).status_code == 200
    assert (await _me(client, token)).status_code == 200

    monkeypatch.setattr(time, "time", lambda: now + 60 + 9.0)  # within the 10 s of leeway
    assert (await _me(client, token)).status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 60 + 10.0)
    body = assert_unauthorized(await _me(client, token))
    assert body["detail"] == "Could not validate credentials"


async def test_a_verified_token_is_kept_per_signing_key(user: User, settings: Settings) -> None:
    # After a key rotation (a restart with a new SECRET_KEY, or another app in one process),
    # a token verified under the old key is not taken as valid under the new one.
    token = _sign(_claims(user, str(uuid.uuid4()), settings))
    assert decode_access_token(token, settings).subject == str(user.id)
    rotated = settings.model_copy(update={"SECRET_KEY": "a-rotated-secret-key-of-32-bytes!!"})
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, rotated)
    assert decode_access_token(token, settings).subject == str(user.id)
