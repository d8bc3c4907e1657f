"""Password hashing (pwdlib, argon2id) and the API's own access tokens (joserfc, HS256)."""

import base64
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache, partial

import anyio
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.core.config import Settings

JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
RESET_TOKEN_TYPE = "password-reset"  # noqa: S105
_BCRYPT_MAX_BYTES = 72


class Passwords:
    """argon2id for new hashes; bcrypt hashes from older systems still verify and get upgraded.

    Hashing takes hundreds of milliseconds of CPU and releases the GIL, so every call runs in a
    worker thread: the event loop keeps serving other requests meanwhile.
    """

    def __init__(self, *, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism),
                BcryptHasher(),
            )
        )
        self._dummy_hash: str | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def _threads(self) -> anyio.CapacityLimiter:
        # At most one hash per core at a time: each takes ARGON2_MEMORY_COST of memory, and a
        # burst of logins on the default 40 worker threads could take gigabytes.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
        return self._limiter

    def hash_sync(self, password: str) -> str:
        return self._hash.hash(password)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password, limiter=self._threads())

    def _verify_and_update(
        self, password: str, hashed: str, *, rehash: bool = True
    ) -> tuple[bool, str | None]:
        """Every verification goes through here; `rehash=False` skips computing an upgrade."""
        try:
            if BcryptHasher.identify(hashed):
                # bcrypt 5 raises past 72 bytes; the bcrypt that made the hash used the first 72.
                valid = self._hash.verify(password.encode()[:_BCRYPT_MAX_BYTES], hashed)
                return valid, self._hash.hash(password) if valid and rehash else None
            if rehash:
                return self._hash.verify_and_update(password, hashed)
            return self._hash.verify(password, hashed), None
        except (UnknownHashError, ValueError):
            # An unrecognised stored hash, or a password bcrypt refuses (it holds NUL).
            return False, None

    async def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Check `password`; on success also return a new hash when `hashed` is outdated."""
        return await anyio.to_thread.run_sync(
            self._verify_and_update, password, hashed, limiter=self._threads()
        )

    async def verify(self, password: str, hashed: str) -> bool:
        """Check `password` only: no upgrade hash is computed (a second ~0.2 s for bcrypt)."""
        valid, _ = await anyio.to_thread.run_sync(
            partial(self._verify_and_update, password, hashed, rehash=False),
            limiter=self._threads(),
        )
        return valid

    async def waste_time(self, password: str) -> None:
        """Spend the time of one verification, so unknown emails answer as slowly as known ones."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy_hash)


@lru_cache
def _passwords(time_cost: int, memory_cost: int, parallelism: int) -> Passwords:
    return Passwords(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def get_passwords(settings: Settings) -> Passwords:
    return _passwords(
        settings.ARGON2_TIME_COST, settings.ARGON2_MEMORY_COST, settings.ARGON2_PARALLELISM
    )


class InvalidTokenError(Exception):
    """The token is missing a claim, malformed, tampered with, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def _key(settings: Settings) -> OctKey:
    return OctKey.import_key(settings.SECRET_KEY)


def credential_fingerprint(hashed_password: str, settings: Settings) -> str:
    """A short tag of the user's current password hash, carried in each token.

    It changes whenever the password does, so changing or resetting a password ends every
    session opened with the old one. An HMAC, so a token reveals nothing about the hash.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), hashed_password.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    credential: str


def _encode(subject: str, settings: Settings, *, kind: str, credential: str, lifetime: int) -> str:
    now = int(time.time())
    claims = {
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "type": kind,
        "cred": credential,
    }
    return jwt.encode({"alg": JWT_ALGORITHM}, claims, _key(settings), algorithms=[JWT_ALGORITHM])


def _registry(kind: str) -> JWTClaimsRegistry:
    return JWTClaimsRegistry(
        leeway=10,  # seconds of clock skew between instances
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        # An access token is no reset token and the other way round.
        type={"essential": True, "value": kind},
        cred={"essential": True},
    )


_REGISTRIES = {kind: _registry(kind) for kind in (ACCESS_TOKEN_TYPE, RESET_TOKEN_TYPE)}


def _decode(token: str, settings: Settings, *, kind: str) -> TokenClaims:
    try:
        # The pinned list rejects `alg: none`, HS384/512 and any asymmetric algorithm.
        decoded = jwt.decode(token, _key(settings), algorithms=[JWT_ALGORITHM])
        _REGISTRIES[kind].validate(decoded.claims)
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidTokenError(type(error).__name__) from error
    subject, credential = decoded.claims["sub"], decoded.claims["cred"]
    if not isinstance(subject, str) or not isinstance(credential, str):
        raise InvalidTokenError("sub and cred must be strings")
    return TokenClaims(subject=subject, credential=credential)


def create_access_token(subject: str, settings: Settings, *, credential: str) -> AccessToken:
    """A signed access token for `subject`; `credential` is its `credential_fingerprint`."""
    lifetime = settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    token = _encode(
        subject, settings, kind=ACCESS_TOKEN_TYPE, credential=credential, lifetime=lifetime
    )
    return AccessToken(token=token, expires_in=lifetime)


def decode_access_token(token: str, settings: Settings) -> TokenClaims:
    """The claims of a valid access token, or InvalidTokenError."""
    return _decode(token, settings, kind=ACCESS_TOKEN_TYPE)


def create_reset_token(subject: str, settings: Settings, *, credential: str) -> str:
    """A password-reset token, for the link in the recovery email.

    Never stored: it carries the `credential_fingerprint` of the password it replaces, so it
    stops working once any new password is set (by this reset or otherwise): single use.
    """
    lifetime = settings.EMAIL_RESET_TOKEN_EXPIRE_HOURS * 3600
    return _encode(
        subject, settings, kind=RESET_TOKEN_TYPE, credential=credential, lifetime=lifetime
    )


def decode_reset_token(token: str, settings: Settings) -> TokenClaims:
    """The claims of a valid password-reset token, or InvalidTokenError."""
    return _decode(token, settings, kind=RESET_TOKEN_TYPE)
