"""Structured log events: one per decision or change, JSON in Lambda, one line in the CLI."""

from __future__ import annotations

import json
import logging
from typing import Any

FIELDS = ("account", "user", "key_id", "action", "reason", "mode", "outcome")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `name` with fields. Callers pass ids and codes only, never key material."""
    logger.log(level, name, extra={"kr_fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "event": record.getMessage(),
            **getattr(record, "kr_fields", {}),
        }
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "kr_fields", {})
        ordered = [k for k in FIELDS if k in fields] + [k for k in fields if k not in FIELDS]
        text = " ".join(f"{k}={fields[k]}" for k in ordered if fields[k] not in (None, ""))
        return f"{record.levelname.lower():7} {record.getMessage()} {text}".rstrip()


def configure(json_lines: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else LineFormatter())
    root = logging.getLogger("keyrotation")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
