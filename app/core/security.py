"""Password hashing (pwdlib, argon2id) and the API's own access tokens (joserfc, HS256)."""

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TypeVar

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
from app.core.errors import ServiceUnavailable

JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
RESET_TOKEN_TYPE = "password-reset"  # noqa: S105
_BCRYPT_MAX_BYTES = 72
LOGIN_HASHING_NICENESS = 10
"""CPU priority of a login's hashing: nice 10 (0 is the normal, 19 the lowest). Against a busy
thread at 0 it gets about a tenth of the core (the kernel's weights: 110 to 1024): the requests
the event loop serves go first, and logins still progress when the CPU is saturated (at 19
they would get 1.5%)."""

T = TypeVar("T")

# Set while a login holds its turn (`Passwords.login_turn`): its hashing runs at low priority.
_in_login_turn: ContextVar[bool] = ContextVar("in_login_turn", default=False)


def _at_low_priority(function: Callable[[], T]) -> T:
    """Run `function` in a new thread at a low CPU priority (`LOGIN_HASHING_NICENESS`), and
    wait for it.

    Anyone can send logins, so their hashing must not take the CPU from the requests the event
    loop is serving: the kernel runs it mostly when nothing else wants the core (see
    `python -m tests.benchmarks.hashing`, variant `queue-only`). Linux keeps the nice value per
    thread, and the threads argon2 starts for its lanes inherit it. A new thread, because an
    unprivileged one cannot raise its priority back: the worker thread that waits here goes on
    to serve the rest of the app at normal priority. Elsewhere the nice value is per process,
    so `function` just runs.
    """
    if sys.platform != "linux":
        return function()
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        with contextlib.suppress(OSError):  # e.g. a seccomp profile forbids it: run as usual
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOGIN_HASHING_NICENESS)
        try:
            results.append(function())
        except BaseException as error:  # re-raised in the waiting thread
            errors.append(error)

    thread = threading.Thread(target=run, name="login-hashing")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


class HashingBusy(ServiceUnavailable):
    """A login found `HASH_QUEUE_MAX` others already waiting to have their password checked."""

    code = "hashing-busy"
    detail = "Too many sign-ins are being checked right now; retry in a second"
    # About the time the default queue takes to drain (a few hashes of ~0.25 s each).
    headers = {"Retry-After": "1"}  # noqa: RUF012


class Passwords:
    """argon2id for new hashes; bcrypt hashes from older systems still verify and get upgraded.

    Hashing takes hundreds of milliseconds of CPU and releases the GIL, so every call runs in a
    worker thread: the event loop keeps serving other requests meanwhile.

    Logins wait for their turn in a bounded queue (`login_turn`): past `queue_max` waiting, a
    login is refused at once (`HashingBusy`) instead of queueing for seconds. A login's hashing
    runs at a low CPU priority (`_at_low_priority`).
    """

    def __init__(
        self,
        *,
        time_cost: int,
        memory_cost: int,
        parallelism: int,
        threads: int | None = None,
        queue_max: int | None = None,
    ) -> None:
        """`threads`: hashes at a time (default: one per core); `queue_max`: logins that may
        wait for a turn (default: twice the threads)."""
        self._hash = PasswordHash(
            (
                Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism),
                BcryptHasher(),
            )
        )
        self._dummy_hash: str | None = None
        self._thread_count = threads or os.cpu_count() or 1
        self._queue_max = 2 * self._thread_count if queue_max is None else queue_max
        self._limiter: anyio.CapacityLimiter | None = None
        self._login_limiter: anyio.CapacityLimiter | None = None
        self._logins_waiting = 0

    def _threads(self) -> anyio.CapacityLimiter:
        # At most one hash per core at a time: each takes ARGON2_MEMORY_COST of memory, and a
        # burst of logins on the default 40 worker threads could take gigabytes.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._thread_count)
        return self._limiter

    def _login_threads(self) -> anyio.CapacityLimiter:
        # Logins may hold every hashing thread but one. Sign-up, password change and reset never
        # enter the login queue: they take a thread directly, behind at most the logins already
        # holding one, so a flood of logins (anyone can send them) delays them by about one hash
        # instead of starving them. They are never refused for being busy: each is throttled or
        # needs a session or an emailed token, so they cannot be the flood.
        if self._login_limiter is None:
            self._login_limiter = anyio.CapacityLimiter(max(1, self._thread_count - 1))
        return self._login_limiter

    @asynccontextmanager
    async def login_turn(self) -> AsyncIterator[None]:
        """Hold one of the logins' hashing threads while checking a login's password.

        HashingBusy at once, before any work, when `queue_max` logins already wait for one:
        past that, a login would wait longer than a client should (each waits for the hashes
        of those ahead of it), and waiting adds no throughput, as every core is hashing.
        """
        limiter = self._login_threads()
        if limiter.available_tokens < 1 and self._logins_waiting >= self._queue_max:
            raise HashingBusy()
        # One event loop per process: this counter needs no lock.
        self._logins_waiting += 1
        try:
            await limiter.acquire()
        finally:
            self._logins_waiting -= 1
        token = _in_login_turn.set(True)
        try:
            yield
        finally:
            _in_login_turn.reset(token)
            limiter.release()

    async def _in_thread(self, function: Callable[[], T]) -> T:
        """Run `function` in one of the hashing threads; a login's at low priority."""
        if _in_login_turn.get():
            function = partial(_at_low_priority, function)
        return await anyio.to_thread.run_sync(function, limiter=self._threads())

    def hash_sync(self, password: str) -> str:
        return self._hash.hash(password)

    async def hash(self, password: str) -> str:
        return await self._in_thread(partial(self._hash.hash, password))

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
        return await self._in_thread(partial(self._verify_and_update, password, hashed))

    async def verify(self, password: str, hashed: str) -> bool:
        """Check `password` only: no upgrade hash is computed (a second ~0.2 s for bcrypt)."""
        valid, _ = await self._in_thread(
            partial(self._verify_and_update, password, hashed, rehash=False)
        )
        return valid

    async def waste_time(self, password: str) -> None:
        """Spend the time of one verification, so unknown emails answer as slowly as known ones."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy_hash)


@lru_cache
def _passwords(time_cost: int, memory_cost: int, parallelism: int, queue_max: int) -> Passwords:
    return Passwords(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, queue_max=queue_max
    )


def get_passwords(settings: Settings) -> Passwords:
    return _passwords(
        settings.ARGON2_TIME_COST,
        settings.ARGON2_MEMORY_COST,
        settings.ARGON2_PARALLELISM,
        settings.HASH_QUEUE_MAX,
    )


class InvalidTokenError(Exception):
    """The token is missing a claim, malformed, tampered with, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def _key(settings: Settings) -> OctKey:
    return _imported_key(settings.SECRET_KEY)


@lru_cache(maxsize=4)
def _imported_key(secret: str) -> OctKey:
    # Imported once per secret, not at every encode and decode (a hot path: every request).
    return OctKey.import_key(secret)


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
    session_id: str | None = None
    """The `sid` of an access token: the session it belongs to (None in a reset token)."""


def _encode(
    subject: str,
    settings: Settings,
    *,
    kind: str,
    credential: str,
    lifetime: int,
    session_id: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "type": kind,
        "cred": credential,
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode({"alg": JWT_ALGORITHM}, claims, _key(settings), algorithms=[JWT_ALGORITHM])


TOKEN_LEEWAY_SECONDS = 10
"""Clock skew allowed between instances, for `exp`, `nbf` and `iat`."""


def _registry(kind: str) -> JWTClaimsRegistry:
    return JWTClaimsRegistry(
        leeway=TOKEN_LEEWAY_SECONDS,
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        # An access token is no reset token and the other way round.
        type={"essential": True, "value": kind},
        cred={"essential": True},
        sid={"essential": kind == ACCESS_TOKEN_TYPE},
    )


_REGISTRIES = {kind: _registry(kind) for kind in (ACCESS_TOKEN_TYPE, RESET_TOKEN_TYPE)}


def _decode(token: str, secret: str, *, kind: str) -> tuple[TokenClaims, int | float]:
    """Every check of a token: its claims and its `exp`, or InvalidTokenError."""
    try:
        # The pinned list rejects `alg: none`, HS384/512 and any asymmetric algorithm.
        decoded = jwt.decode(token, _imported_key(secret), algorithms=[JWT_ALGORITHM])
        _REGISTRIES[kind].validate(decoded.claims)
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidTokenError(type(error).__name__) from error
    subject, credential = decoded.claims["sub"], decoded.claims["cred"]
    session_id = decoded.claims.get("sid")
    if not isinstance(subject, str) or not isinstance(credential, str):
        raise InvalidTokenError("sub and cred must be strings")
    if session_id is not None and not isinstance(session_id, str):
        raise InvalidTokenError("sid must be a string")
    claims = TokenClaims(subject=subject, credential=credential, session_id=session_id)
    return claims, decoded.claims["exp"]


# An access token is sent with every request for its 15 minutes, and verifying it (signature,
# JSON, claims) was an eighth of an authenticated request's CPU. So a verified token is kept
# (only a valid one: errors are not cached, and a valid one takes a login to get), and a repeat
# checks only what time can change: `exp`. `nbf` and `iat` only ever become more valid. What
# can end a token early (logout, a new password, deactivation) is the session and credential
# check against the database, which runs on every request as before.
VERIFIED_ACCESS_TOKENS = 4096


@lru_cache(maxsize=VERIFIED_ACCESS_TOKENS)
def _verified_access_token(token: str, secret: str) -> tuple[TokenClaims, int | float]:
    return _decode(token, secret, kind=ACCESS_TOKEN_TYPE)


def create_access_token(
    subject: str, settings: Settings, *, credential: str, session_id: str
) -> AccessToken:
    """A signed access token for `subject` in session `session_id`; `credential` is its
    `credential_fingerprint`."""
    lifetime = settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    token = _encode(
        subject,
        settings,
        kind=ACCESS_TOKEN_TYPE,
        credential=credential,
        lifetime=lifetime,
        session_id=session_id,
    )
    return AccessToken(token=token, expires_in=lifetime)


def decode_access_token(token: str, settings: Settings) -> TokenClaims:
    """The claims of a valid access token, or InvalidTokenError."""
    claims, expires = _verified_access_token(token, settings.SECRET_KEY)
    # joserfc's own rule, with the registry's leeway: expired when `exp <= now - leeway`.
    if expires <= int(time.time()) - TOKEN_LEEWAY_SECONDS:
        raise InvalidTokenError("ExpiredTokenError")
    return claims


def create_reset_token(subject: str, settings: Settings, *, credential: str) -> str:
    """A password-reset token, for the link in the recovery email.

    Never stored: it carries the `credential_fingerprint` of the password it replaces, so it
    stops working once any new password is set (by this reset or otherwise): single use.
    """
    lifetime = settings.EMAIL_RESET_TOKEN_EXPIRE_HOURS * 3600
    return _encode(
        subject, settings, kind=RESET_TOKEN_TYPE, credential=credential, lifetime=lifetime
    )


def new_refresh_token() -> tuple[str, str]:
    """A new opaque refresh token and the SHA-256 hex digest that is stored instead of it."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def decode_reset_token(token: str, settings: Settings) -> TokenClaims:
    """The claims of a valid password-reset token, or InvalidTokenError."""
    return _decode(token, settings.SECRET_KEY, kind=RESET_TOKEN_TYPE)[0]
