"""Utils: operational endpoints (health check)."""
