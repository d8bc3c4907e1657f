"""Sign in with an OpenID Connect provider.

A browser opens `/login/oidc/{provider}` and comes back, through the provider, to its callback,
which sends it on to the frontend: `/login/oidc?code=...` on success, `/login?error=<reason>`
otherwise (`errors.Reason`). The frontend then posts the code to `/login/oidc/token`. A name
that is no configured provider is a 404 problem: no browser gets there by following links.
"""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Cookie, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.convertors import StringConvertor, register_url_convertor

from app.auth.deps import token_response
from app.auth.schemas import Token
from app.core.config import API_V1_PREFIX, Settings
from app.core.deps import PasswordsDep, SessionDep, SettingsDep
from app.core.problems import problem_responses
from app.core.routing import FeatureRouter
from app.oidc import service
from app.oidc.deps import ProviderDep
from app.oidc.errors import OidcLoginFailed
from app.oidc.schemas import CodeExchange


class _ProviderName(StringConvertor):
    """A provider's name in a path: never `token`, so `/login/oidc/token` is only the code
    exchange (with `{provider}` alone, a GET there matched the sign-in route, and 405 answers
    advertised a GET the API does not offer; found by `make contract`)."""

    regex = r"(?!token(?:/|$))[a-z][a-z0-9_]*"


register_url_convertor("oidc_provider", _ProviderName())

public_router = FeatureRouter(tags=["login"])

STATE_COOKIE = "oidc_login"

_CallbackParameter = Annotated[str | None, Query(max_length=4096)]


def _redirect_docs(description: str) -> dict[int | str, dict[str, Any]]:
    location = {"description": "Where the browser goes next", "schema": {"type": "string"}}
    return {
        302: {"description": description, "headers": {"Location": location}},
        **problem_responses(404),
    }


def _callback_path(provider: str) -> str:
    return f"{API_V1_PREFIX}/login/oidc/{provider}/callback"


def _redirect(url: str) -> RedirectResponse:
    # The URL carries a state, or a one-time code: no cache may keep it.
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


def _to_frontend(settings: Settings, path: str, **query: str) -> RedirectResponse:
    return _redirect(f"{settings.FRONTEND_HOST}{path}?{urlencode(query)}")


@public_router.get(
    "/login/oidc/{provider:oidc_provider}",
    status_code=302,
    response_class=RedirectResponse,
    responses=_redirect_docs(
        "To the provider's sign-in page; to the frontend's `/login?error=provider_unavailable` "
        "when the provider cannot be reached"
    ),
)
async def oidc_login(
    provider: ProviderDep, request: Request, settings: SettingsDep
) -> RedirectResponse:
    """Start signing in with this OpenID Connect provider: open it in the browser."""
    redirect_uri = str(request.url_for("oidc_callback", provider=provider.name))
    try:
        started = await service.start_login(provider, settings, redirect_uri=redirect_uri)
    except OidcLoginFailed as failure:
        return _to_frontend(settings, "/login", error=failure.reason.value)
    response = _redirect(started.url)
    # Lax, not Strict: the callback is a top-level navigation from the provider's site.
    response.set_cookie(
        STATE_COOKIE,
        started.sealed_state,
        max_age=service.LOGIN_STATE_SECONDS,
        path=_callback_path(provider.name),
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@public_router.get(
    "/login/oidc/{provider:oidc_provider}/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses=_redirect_docs(
        "To the frontend: `/login/oidc?code=<one-time code>` on success, "
        "`/login?error=<reason>` otherwise"
    ),
)
async def oidc_callback(
    provider: ProviderDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    code: _CallbackParameter = None,
    state: _CallbackParameter = None,
    error: _CallbackParameter = None,
    sealed_state: Annotated[str | None, Cookie(alias=STATE_COOKIE, include_in_schema=False)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back (register this URL with the provider)."""
    try:
        login_code = await service.finish_login(
            session,
            passwords,
            settings,
            provider,
            redirect_uri=str(request.url_for("oidc_callback", provider=provider.name)),
            sealed_state=sealed_state,
            code=code,
            state=state,
            error=error,
        )
        response = _to_frontend(settings, "/login/oidc", code=login_code)
    except OidcLoginFailed as failure:
        response = _to_frontend(settings, "/login", error=failure.reason.value)
    # Used once, whatever the outcome.
    response.delete_cookie(
        STATE_COOKIE,
        path=_callback_path(provider.name),
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@public_router.post("/login/oidc/token", response_model=Token, responses=problem_responses(400))
async def oidc_token(
    body: CodeExchange, response: Response, session: SessionDep, settings: SettingsDep
) -> Token:
    """Exchange the one-time code of `/login/oidc?code=...` for a token pair, once, within a
    minute; as `POST /login/access-token` answers."""
    pair = await service.exchange_code(session, settings, code=body.code)
    return token_response(pair, response, settings)
