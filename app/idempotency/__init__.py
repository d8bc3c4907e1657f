"""Idempotency keys: a `POST` retried with the same `Idempotency-Key` is answered with the stored
answer of the first, instead of being done twice. Keys are per user and per route, stored in the
database (so they hold across instances) and forgotten after `IDEMPOTENCY_KEY_TTL_HOURS`."""
