"""A real OpenID Connect provider for the tests: discovery, JWKS, `/authorize` and `/token`,
served over HTTP by uvicorn on a free port in a background thread (authlib reads the metadata,
the keys and the token over the network, as it would from a real provider).

It checks what a provider checks (client credentials, redirect URI, single-use codes, the PKCE
verifier against its S256 challenge) and signs RS256 ID tokens with joserfc. `behaviour` says
what the next ID token claims and how it is signed, so a test can make it lie.
"""

import base64
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

KEY_ID = "test-key-1"


@dataclass
class Behaviour:
    """What the provider's next ID token says, and how it is signed."""

    email: str | None = "new.person@example.com"
    email_verified: object = True
    name: str | None = "New Person"
    audience: str | None = None
    """None: the client the code was issued to, as it should be."""
    expires_in: int = 300
    """Seconds from now to `exp`; negative for a token that expired already."""
    nonce: str | None = None
    """None: the nonce of the authorization request, as it should be."""
    rogue_key: bool = False
    """Sign with a key that is not in the JWKS (under the published key's id)."""


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    code_challenge: str
    used: bool = False


@dataclass
class FakeProvider:
    key: RSAKey = field(default_factory=lambda: _rsa_key())
    rogue: RSAKey = field(default_factory=lambda: _rsa_key())
    issuer: str = ""
    behaviour: Behaviour = field(default_factory=Behaviour)
    metadata_changes: dict[str, Any] = field(default_factory=dict)
    """Merged into the discovery document (None removes a key), to make it wrong."""
    clients: dict[str, str] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.metadata_changes.clear()
        self.grants.clear()
        self.authorize_requests.clear()
        self.token_requests.clear()

    def new_client(self) -> tuple[str, str]:
        """Register a client: its id and secret."""
        client_id, secret = f"client-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
        self.clients[client_id] = secret
        return client_id, secret

    # --- endpoints -----------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        metadata = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile"],
        }
        metadata.update(self.metadata_changes)
        return JSONResponse({key: value for key, value in metadata.items() if value is not None})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        """The user signs in and consents at once; the browser goes back with a code."""
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        wrong = [
            name
            for name, ok in (
                ("response_type", query.get("response_type") == "code"),
                ("client_id", query.get("client_id") in self.clients),
                ("scope", "openid" in query.get("scope", "").split()),
                ("code_challenge_method", query.get("code_challenge_method") == "S256"),
                ("code_challenge", bool(query.get("code_challenge"))),
                ("state", bool(query.get("state"))),
                ("nonce", bool(query.get("nonce"))),
                ("redirect_uri", bool(query.get("redirect_uri"))),
            )
            if not ok
        ]
        if wrong:
            return _oauth_error("invalid_request", f"bad {', '.join(wrong)}")
        code = secrets.token_urlsafe(24)
        self.grants[code] = Grant(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            nonce=query["nonce"],
            code_challenge=query["code_challenge"],
        )
        back = urlencode({"code": code, "state": query["state"]})
        return RedirectResponse(f"{query['redirect_uri']}?{back}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.token_requests.append(form)
        client_id, secret = _basic_credentials(request.headers.get("authorization", ""))
        if not client_id or self.clients.get(client_id) != secret:
            return _oauth_error("invalid_client", "unknown client or wrong secret", status=401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "authorization_code only")
        grant = self.grants.get(form.get("code", ""))
        if grant is None or grant.used or grant.client_id != client_id:
            return _oauth_error("invalid_grant", "unknown or used code")
        grant.used = True  # RFC 6749 4.1.2: a code is used once, whatever happens next
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri differs")
        if _s256(form.get("code_verifier", "")) != grant.code_challenge:
            return _oauth_error("invalid_grant", "PKCE verification failed")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    def id_token(self, grant: Grant) -> str:
        behaviour, now = self.behaviour, int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"subject-{behaviour.email}",
            "aud": behaviour.audience or grant.client_id,
            "iat": min(now, now + behaviour.expires_in - 60),
            "exp": now + behaviour.expires_in,
            "nonce": behaviour.nonce or grant.nonce,
        }
        if behaviour.email is not None:
            claims["email"] = behaviour.email
        if behaviour.email_verified is not None:
            claims["email_verified"] = behaviour.email_verified
        if behaviour.name is not None:
            claims["name"] = behaviour.name
        key = self.rogue if behaviour.rogue_key else self.key
        return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key, algorithms=["RS256"])

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free port of 127.0.0.1 until the block ends; yields the issuer."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the test OpenID provider did not start")
                time.sleep(0.01)
            yield self.issuer
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def _rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _basic_credentials(header: str) -> tuple[str, str]:
    """client_secret_basic (RFC 6749 2.3.1): both parts form-encoded, then Basic."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded).decode()
    except ValueError:
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _oauth_error(error: str, description: str, *, status: int = 400) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
