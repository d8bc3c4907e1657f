"""How the token pair reaches the client: in the JSON, or its refresh token in an HttpOnly cookie
(cookie mode). Shared by every way of signing in (password, refresh, OpenID Connect)."""

import secrets

from fastapi import Response

from app.auth.schemas import Token
from app.auth.service import TokenPair
from app.core.config import API_V1_PREFIX, Settings

REFRESH_PATH = "/login/refresh"
REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def token_response(pair: TokenPair, response: Response, settings: Settings) -> Token:
    # Tokens are credentials: no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    if not settings.REFRESH_TOKEN_COOKIE:
        return Token(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
        )
    max_age = settings.REFRESH_TOKEN_EXPIRE_DAYS * 86400
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=max_age,
        path=f"{API_V1_PREFIX}{REFRESH_PATH}",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    # Readable by the frontend's scripts (not HttpOnly), sent back as the X-CSRF-Token header.
    response.set_cookie(
        CSRF_COOKIE, secrets.token_urlsafe(32), max_age=max_age, secure=True, samesite="strict"
    )
    return Token(access_token=pair.access_token, expires_in=pair.expires_in)


def forget_cookies(response: Response) -> None:
    response.delete_cookie(REFRESH_COOKIE, path=f"{API_V1_PREFIX}{REFRESH_PATH}", secure=True)
    response.delete_cookie(CSRF_COOKIE, secure=True)
