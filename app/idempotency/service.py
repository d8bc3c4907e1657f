"""Claiming a key for a request, and replaying the answer of the request that claimed it."""

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import utcnow
from app.idempotency import crud
from app.idempotency.errors import IdempotencyKeyReused

log = structlog.get_logger(__name__)

# Expired keys deleted per claim, at most: bounded work per request, and more than one request
# can create, so the table never grows past what the last TTL's requests made.
PURGE_BATCH = 100


@dataclass(frozen=True)
class Stored:
    """The answer the first request with a key got."""

    status_code: int
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Request:
    """A request that carries an idempotency key: who sent it, where, and a fingerprint of what
    it asked (a keyed hash: the body of `POST /users/` holds a password)."""

    user_id: uuid.UUID
    scope: str
    key: str
    fingerprint: str


def fingerprint(settings: Settings, body: Mapping[str, Any]) -> str:
    """A keyed hash of a validated body: equal for the same values, whatever their order."""
    secret = hashlib.sha256(b"idempotency-keys\0" + settings.SECRET_KEY.encode()).digest()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(secret, canonical.encode(), "sha256").hexdigest()


def _expired_before(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


async def find(
    session: AsyncSession, settings: Settings, request: Request, *, now: datetime | None = None
) -> Stored | None:
    """The stored answer to this request's key, or None when the key is new (or expired).
    IdempotencyKeyReused when the key was used with another body."""
    now = now or utcnow()
    row = await crud.get(session, user_id=request.user_id, scope=request.scope, key=request.key)
    if row is None or row.created_at < _expired_before(settings, now):
        return None
    if not hmac.compare_digest(row.fingerprint, request.fingerprint):
        raise IdempotencyKeyReused()
    if row.status_code is None or row.body is None:
        # Only the transaction that claimed the key sees it unanswered, and it is not asking.
        raise RuntimeError(f"idempotency key {row.id} has no stored answer")
    return Stored(status_code=row.status_code, body=row.body, headers=dict(row.headers or {}))


async def claim(session: AsyncSession, settings: Settings, request: Request) -> Stored | None:
    """Claim the key for this request (None: go on, then `complete` it before committing), or
    the answer of the request that claimed it first, waiting for that request to commit when it
    is still running. IdempotencyKeyReused when that one had another body."""
    now = utcnow()
    expired_before = _expired_before(settings, now)
    await crud.delete_expired(session, expired_before=expired_before, limit=PURGE_BATCH)
    claimed = await crud.claim(
        session,
        user_id=request.user_id,
        scope=request.scope,
        key=request.key,
        fingerprint=request.fingerprint,
        now=now,
        expired_before=expired_before,
    )
    if claimed:
        return None
    stored = await find(session, settings, request, now=now)
    if stored is None:
        raise RuntimeError("a live idempotency key vanished while it was being claimed")
    log.info("idempotency.replayed", scope=request.scope, status=stored.status_code)
    return stored


async def complete(session: AsyncSession, request: Request, answer: Stored) -> None:
    """Store the answer of the request that claimed the key, in its transaction."""
    await crud.complete(
        session,
        user_id=request.user_id,
        scope=request.scope,
        key=request.key,
        status_code=answer.status_code,
        body=answer.body,
        headers=answer.headers,
    )
