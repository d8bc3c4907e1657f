"""One item of `Settings.OIDC_PROVIDERS`: an OpenID Connect provider, validated where it is read."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class OidcProvider(BaseModel):
    """An OpenID Connect provider users may sign in with: one item of `OIDC_PROVIDERS`."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    """Its part of the login URL, `/api/v1/login/oidc/{name}`: a lower-case identifier."""

    @field_validator("name")
    @classmethod
    def _not_token(cls, value: str) -> str:
        if value == "token":
            raise ValueError("'token' is taken by the code exchange, /login/oidc/token")
        return value

    issuer: str
    """Exactly as its ID tokens' `iss` claim says (`https://accounts.google.com`); its metadata
    is read from `{issuer}/.well-known/openid-configuration`."""

    client_id: str = Field(min_length=1)
    """This service's client id at the provider: the `aud` its ID tokens must name."""

    client_secret: SecretStr
    """This service's client secret at the provider."""

    scopes: tuple[str, ...] = ("openid", "email", "profile")
    """Scopes requested; `openid` is required, `email` is how accounts are matched."""

    @field_validator("issuer")
    @classmethod
    def _https_issuer(cls, value: str) -> str:
        # OpenID Connect Discovery: the issuer is an https URL without query or fragment.
        # Plain http only on this machine, for a provider run in development or tests.
        loopback = ("http://localhost", "http://127.0.0.1", "http://[::1]")
        local = any(
            value == base or value.startswith((f"{base}:", f"{base}/")) for base in loopback
        )
        if not (value.startswith("https://") and len(value) > len("https://")) and not local:
            raise ValueError("an issuer is an https:// URL (http:// only for localhost)")
        if "?" in value or "#" in value:
            raise ValueError("an issuer has no query or fragment")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("the scopes must include `openid`")
        return value

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
