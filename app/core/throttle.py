"""Request limits that hold across instances: counted in Redis when `REDIS_URL` is set (in this
process's memory otherwise), checked by the routes that attackers repeat (sign-up, password
recovery, failed logins, token refresh).

    await throttle.check("login_failures_account", email)  # refuse if exhausted; counts nothing
    await throttle.hit("signup", address)                   # count one; refuse if over the limit

Over a limit: `TooManyRequests` (429 with `Retry-After`). Redis unreachable: served without
limits (`THROTTLE_FAIL_OPEN`, one `throttle.degraded` warning until it works again) or refused
with 503; never a 500, and never more than about half a second spent waiting for it.
"""

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import structlog
from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.core.config import Settings
from app.core.deps import SettingsDep

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool
from app.core.errors import AppError, ServiceUnavailable

log = structlog.get_logger(__name__)

LimitName = Literal[
    "login_failures_account", "login_failures_address", "signup", "recovery", "refresh"
]

# A throttle check is not worth a slow request: a dead or unreachable Redis costs at most this per
# connect and per reply, with no retries (redis-py's default would retry 3 times with backoff).
STORAGE_TIMEOUT_SECONDS = 0.5
# After a failure, requests skip Redis for this long instead of each waiting for it to time out.
STORAGE_RETRY_SECONDS = 1.0
KEY_PREFIX = "throttle"

# What an unreachable or failing storage raises: limits wraps some errors in StorageError; OSError
# for the rest; with Redis, redis-py wraps socket errors in RedisError (see `_redis_storage`).
_STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError, OSError)

T = TypeVar("T")


class TooManyRequests(AppError):
    status_code = 429
    title = "Too Many Requests"
    code = "too-many-requests"
    detail = "Too many requests; retry later"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        # Per instance: `headers` is a class attribute of AppError, shared by every instance.
        self.headers = {"Retry-After": str(self.retry_after)}
        super().__init__(detail or f"Too many attempts; retry in {_duration(self.retry_after)}")


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


def _limits(settings: Settings) -> dict[LimitName, RateLimitItem]:
    return {
        "login_failures_account": parse(settings.THROTTLE_LOGIN_FAILURES_PER_ACCOUNT),
        "login_failures_address": parse(settings.THROTTLE_LOGIN_FAILURES_PER_ADDRESS),
        "signup": parse(settings.THROTTLE_SIGNUP_PER_ADDRESS),
        "recovery": parse(settings.THROTTLE_RECOVERY_PER_ADDRESS),
        "refresh": parse(settings.THROTTLE_REFRESH_PER_SESSION),
    }


def _limits_uri(redis_url: str) -> str:
    # limits picks its storage by scheme: async+redis://, async+rediss://, async+redis+unix://.
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


def _redis_storage(
    redis_url: str, key_prefix: str
) -> tuple["ConnectionPool", Storage, tuple[type[Exception], ...]]:
    """Our own pool, so the timeouts apply and shutdown can close it; the storage on it; what it
    raises when Redis fails. redis-py is imported here, only when Redis is configured: importing
    it costs about a second, a fifth of the app's start."""
    from redis.asyncio import ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError

    pool = ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
        socket_timeout=STORAGE_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    # limits' options are typed for scalars, hence the dict.
    options: dict[str, Any] = {"connection_pool": pool}
    storage = RedisStorage(
        _limits_uri(redis_url), implementation="redispy", key_prefix=key_prefix, **options
    )
    return pool, storage, (RedisError, *_STORAGE_ERRORS)


class Throttle:
    """The app's request limits (`app.state.throttle`), built from Settings.

    Moving window: each hit is a timestamp, and a limit of N per period refuses the N+1th hit
    within any period, whenever it started. Unlike a fixed window there is no boundary to burst
    across (2N at the turn of the period), and unlike the sliding-window counter it is exact and
    knows when the oldest hit frees its slot, which is the `Retry-After` we send. It stores up to
    N timestamps per key, which is cheap for limits of tens to hundreds of attempts.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        key_prefix: str = KEY_PREFIX,
        storage_retry_seconds: float = STORAGE_RETRY_SECONDS,
    ) -> None:
        self.enabled = settings.THROTTLE_ENABLED
        self._fail_open = settings.THROTTLE_FAIL_OPEN
        self._limits = _limits(settings)
        # Keys are keyed hashes: Redis never holds an email or an address, and a dump of it cannot
        # be matched against a list of emails without the key. Derived, so SECRET_KEY itself
        # signs only tokens.
        self._key_secret = hashlib.sha256(
            b"throttle-keys\0" + settings.SECRET_KEY.encode()
        ).digest()
        self._storage_retry_seconds = storage_retry_seconds
        self._skip_storage_until = 0.0
        self._degraded = False
        self._pool: ConnectionPool | None = None
        self._errors = _STORAGE_ERRORS
        storage: Storage
        if settings.REDIS_URL:
            self._pool, storage, self._errors = _redis_storage(settings.REDIS_URL, key_prefix)
        else:
            storage = MemoryStorage()
            if self.enabled and settings.ENVIRONMENT == "production":
                log.warning(
                    "throttle.in_memory",
                    hint="set REDIS_URL: limits counted in each process's memory are not shared "
                    "between instances",
                )
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, name: LimitName, key: str) -> None:
        """Raise `TooManyRequests` if the limit `name` is exhausted for `key`; counts nothing."""
        if not self.enabled:
            return
        item, digest = self._limits[name], self._digest(key)
        if not await self._storage_call(lambda: self._limiter.test(item, name, digest), True):
            raise await self._too_many(item, name, digest)

    async def hit(self, name: LimitName, key: str) -> None:
        """Count one attempt for `key` against the limit `name`; raise `TooManyRequests` (and
        count nothing) if that would go over it."""
        if not self.enabled:
            return
        item, digest = self._limits[name], self._digest(key)
        if not await self._storage_call(lambda: self._limiter.hit(item, name, digest), True):
            raise await self._too_many(item, name, digest)

    async def clear(self, name: LimitName, key: str) -> None:
        """Forget the attempts of `key` against `name` (e.g. an account's failed logins once it
        logs in)."""
        if not self.enabled:
            return
        item, digest = self._limits[name], self._digest(key)
        await self._storage_call(lambda: self._limiter.clear(item, name, digest), None)

    async def reset(self) -> None:
        """Forget every count under this throttle's key prefix (tests)."""
        if not self.enabled:
            return
        if isinstance(self._storage, MemoryStorage):
            # limits' memory storage expires entries in a background task that iterates its
            # dicts across awaits; clearing them under it raised KeyError in that task (seen in
            # CI). A fresh storage leaves the old task its own dicts.
            self._storage = MemoryStorage()
            self._limiter = MovingWindowRateLimiter(self._storage)
        else:
            await self._storage.reset()

    @property
    def uses_redis(self) -> bool:
        return self._pool is not None

    async def ping(self) -> None:
        """Raise unless Redis answers (readiness); within the storage timeouts, no retries."""
        if self._pool is not None:
            from redis.asyncio import Redis

            await Redis(connection_pool=self._pool).ping()

    async def aclose(self) -> None:
        """Close the connections to Redis (app shutdown)."""
        if self._pool is not None:
            await self._pool.aclose()

    def _digest(self, key: str) -> str:
        # Lower-cased: emails compare case-insensitively, and so do IPv6 addresses.
        normalized = key.strip().lower().encode()
        return hmac.new(self._key_secret, normalized, hashlib.sha256).hexdigest()[:32]

    async def _too_many(self, item: RateLimitItem, name: str, digest: str) -> TooManyRequests:
        stats = await self._storage_call(
            lambda: self._limiter.get_window_stats(item, name, digest), None
        )
        if stats is None:  # Redis failed just now: the whole window is the safe answer
            return TooManyRequests(item.get_expiry())
        if stats.remaining > 0:  # the oldest hit expired between the two calls
            return TooManyRequests(1)
        return TooManyRequests(math.ceil(stats.reset_time - time.time()))

    async def _storage_call(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`call`'s result; when the storage fails, `fallback` (fail open) or ServiceUnavailable."""
        if time.monotonic() < self._skip_storage_until:
            return self._unavailable(fallback)
        try:
            result = await call()
        except self._errors as error:
            self._skip_storage_until = time.monotonic() + self._storage_retry_seconds
            if not self._degraded:
                # Once per outage: under load, a line per request would drown the logs.
                self._degraded = True
                log.warning(
                    "throttle.degraded",
                    error=str(error) or type(error).__name__,
                    fail_open=self._fail_open,
                )
            return self._unavailable(fallback)
        if self._degraded:
            self._degraded = False
            log.info("throttle.recovered")
        return result

    def _unavailable(self, fallback: T) -> T:
        if self._fail_open:
            return fallback
        error = ServiceUnavailable("Request limits cannot be checked right now; retry later")
        retry_after = max(1, math.ceil(self._skip_storage_until - time.monotonic()))
        error.headers = {"Retry-After": str(retry_after)}
        raise error


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _ip(text: str) -> Address | None:
    """The address in `text` (ports and brackets removed, IPv4-mapped IPv6 as IPv4), or None."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_address(request: Request, settings: Settings) -> str:
    """The address of the client: the socket peer, unless that is a trusted proxy
    (`TRUSTED_PROXIES`); then the right-most `X-Forwarded-For` entry that is not itself a trusted
    proxy. Entries left of it are whatever the client sent, so they are never believed."""
    peer = request.client.host if request.client else ""
    address = _ip(peer)
    if address is None:
        return peer or "unknown"
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    hops = [
        hop for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")
    ]
    for hop in reversed(hops):
        if not any(address in network for network in trusted):
            break
        forwarded = _ip(hop)
        if forwarded is None:  # garbage where the proxy's entry should be: stop at the proxy
            break
        address = forwarded
    return str(address)


async def _app_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def _client_address(request: Request, settings: SettingsDep) -> str:
    return client_address(request, settings)


ThrottleDep = Annotated[Throttle, Depends(_app_throttle)]
ClientAddressDep = Annotated[str, Depends(_client_address)]
