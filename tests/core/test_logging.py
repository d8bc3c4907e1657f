import json

import pytest
import structlog

from app.core.config import Settings
from app.core.logging import setup_logging


def test_production_logs_are_one_json_object_per_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(settings.model_copy(update={"LOG_JSON": True}))
    try:
        structlog.get_logger("app.test").info("item.created", item_id="42")
        try:
            raise ValueError("boom")
        except ValueError:
            structlog.get_logger("app.test").exception("item.failed")
    finally:
        setup_logging(settings)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    created, failed = lines
    assert created["event"] == "item.created"
    assert created["item_id"] == "42"
    assert created["level"] == "info"
    assert created["logger"] == "app.test"
    assert created["timestamp"].endswith("Z")
    assert failed["exception"][0]["exc_type"] == "ValueError"
