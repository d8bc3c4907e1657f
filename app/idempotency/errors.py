from app.core.errors import AppError


class IdempotencyKeyReused(AppError):
    status_code = 422
    title = "Unprocessable Content"
    code = "idempotency-key-reused"
    detail = (
        "This Idempotency-Key was already used with a different request body; a new request "
        "needs a new key"
    )
