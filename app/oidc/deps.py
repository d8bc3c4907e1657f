"""The configured providers, each with its authlib client, and loading one by its name."""

from functools import lru_cache
from typing import Annotated

from authlib.integrations.starlette_client import OAuth  # type: ignore[import-untyped]
from fastapi import Depends

from app.core.deps import SettingsDep
from app.core.oidc_provider import OidcProvider
from app.oidc.errors import UnknownProvider
from app.oidc.service import Provider

PROVIDER_TIMEOUT_SECONDS = 10.0
"""Longest wait for a provider's metadata, keys or token endpoint."""


@lru_cache(maxsize=8)
def _providers(configured: tuple[OidcProvider, ...]) -> dict[str, Provider]:
    # One authlib registry per provider list, built on first use from the app's settings (what
    # `app.state.settings` holds, which tests swap) rather than at import. Each client keeps its
    # provider's metadata and keys, so they are fetched once per process, not per sign-in.
    oauth = OAuth()
    return {
        config.name: Provider(
            config=config,
            client=oauth.register(
                config.name,
                client_id=config.client_id,
                client_secret=config.client_secret.get_secret_value(),
                server_metadata_url=config.metadata_url,
                client_kwargs={
                    "scope": " ".join(config.scopes),
                    "code_challenge_method": "S256",
                    "timeout": PROVIDER_TIMEOUT_SECONDS,
                },
            ),
        )
        for config in configured
    }


async def get_provider(provider: str, settings: SettingsDep) -> Provider:
    """The provider named in the path; 404 when none has that name."""
    found = _providers(tuple(settings.OIDC_PROVIDERS)).get(provider)
    if found is None:
        raise UnknownProvider()
    return found


ProviderDep = Annotated[Provider, Depends(get_provider)]
