"""Logging set-up, done once per process: plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any, Literal

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JSONFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(
    level: str = "INFO", fmt: Literal["plain", "json"] = "plain", *, stream: Any = None
) -> None:
    """Configure the root logger once for this process."""
    handler: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "formatter": fmt,
    }
    if stream is not None:
        handler["stream"] = stream
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
                "json": {"()": JSONFormatter},
            },
            "handlers": {"main": handler},
            "root": {"level": level.upper(), "handlers": ["main"]},
            "loggers": {"aiohttp.access": {"level": "WARNING"}},
        }
    )
