"""OIDC_PROVIDERS: read from JSON, and refused at start when it could not work."""

import json
import time
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.oidc_provider import OidcProvider
from app.oidc.service import LoginState, seal_login_state, unseal_login_state

GOOGLE = {
    "name": "google",
    "issuer": "https://accounts.google.com",
    "client_id": "id.apps.googleusercontent.com",
    "client_secret": "a-secret",
}


def test_providers_are_read_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_PROVIDERS", json.dumps([GOOGLE, {**GOOGLE, "name": "corp_sso"}]))

    google, corp = Settings(_env_file=None).OIDC_PROVIDERS

    assert (google.name, corp.name) == ("google", "corp_sso")
    assert google.scopes == ("openid", "email", "profile")
    assert google.client_secret.get_secret_value() == "a-secret"
    assert "a-secret" not in repr(google)
    assert google.metadata_url == "https://accounts.google.com/.well-known/openid-configuration"


def test_there_are_no_providers_by_default() -> None:
    assert Settings(_env_file=None).OIDC_PROVIDERS == []


def test_an_issuer_with_a_trailing_slash_keeps_it_but_not_in_the_metadata_url() -> None:
    provider = OidcProvider(**{**GOOGLE, "issuer": "https://tenant.auth0.com/"})
    assert provider.issuer == "https://tenant.auth0.com/"
    assert provider.metadata_url == "https://tenant.auth0.com/.well-known/openid-configuration"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Google"}, "name"),
        ({"name": "my-idp"}, "name"),
        ({"name": "1idp"}, "name"),
        ({"name": ""}, "name"),
        ({"issuer": "http://accounts.example.com"}, "https://"),
        ({"issuer": "http://localhost.example.com"}, "https://"),
        ({"issuer": "https://"}, "https://"),
        ({"issuer": "accounts.google.com"}, "https://"),
        ({"issuer": "https://idp.example.com/?tenant=1"}, "query or fragment"),
        ({"scopes": ["email"]}, "openid"),
        ({"client_id": ""}, "client_id"),
        ({"tenant": "x"}, "tenant"),
    ],
)
def test_a_provider_that_cannot_work_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, OIDC_PROVIDERS=[{**GOOGLE, **change}])


@pytest.mark.parametrize(
    "issuer", ["http://localhost:8080", "http://127.0.0.1:9000/realms/test", "http://[::1]"]
)
def test_a_provider_on_this_machine_may_use_plain_http(issuer: str) -> None:
    assert OidcProvider(**{**GOOGLE, "issuer": issuer}).issuer == issuer


def test_provider_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="listed twice: \\['google'\\]"):
        Settings(_env_file=None, OIDC_PROVIDERS=[GOOGLE, GOOGLE])


LOGIN = LoginState(provider="acme", state="s", nonce="n", code_verifier="v")


def test_the_state_cookie_round_trips(settings: Settings) -> None:
    assert unseal_login_state(settings, seal_login_state(settings, LOGIN)) == LOGIN


def test_a_tampered_state_cookie_is_refused(settings: Settings) -> None:
    sealed = seal_login_state(settings, LOGIN)
    other_key = settings.model_copy(update={"SECRET_KEY": "another-secret-key-of-32-bytes-or-more"})

    assert unseal_login_state(settings, sealed[:-2] + "xx") is None
    assert unseal_login_state(other_key, sealed) is None
    assert unseal_login_state(settings, "") is None
    assert unseal_login_state(settings, None) is None


def test_a_state_cookie_older_than_ten_minutes_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: now - 601)
        sealed = seal_login_state(settings, LOGIN)

    assert unseal_login_state(settings, sealed) is None


@pytest.mark.anyio
async def test_the_exchange_path_is_no_provider_name(client: httpx2.AsyncClient) -> None:
    # `/login/oidc/token` is only the code exchange: a GET there is a 405 that offers POST alone
    # (with a plain `{provider}` it matched the sign-in route; found by `make contract`).
    response = await client.get("/login/oidc/token")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    with pytest.raises(ValidationError, match="taken by the code exchange"):
        Settings(
            OIDC_PROVIDERS=[
                {
                    "name": "token",
                    "issuer": "https://idp.example.com",
                    "client_id": "a",
                    "client_secret": "b",
                }
            ]
        )
