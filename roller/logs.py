"""Structured logging: one `key=value` line per event, the same format in every process."""

import logging
import os

from roller import redact
from roller.errors import ConfigError

FORMAT = "ts=%(asctime)s level=%(levelname)s proc=%(processName)s logger=%(name)s %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(level: str | None) -> str:
    """The level to use: `level`, else $ROLLER_LOG_LEVEL, else INFO; ConfigError if unknown."""
    name = (level or os.environ.get("ROLLER_LOG_LEVEL") or "INFO").upper()
    if name not in LEVELS:
        raise ConfigError(f"log level {name!r}: expected one of {', '.join(LEVELS)}")
    return name


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once (the Celery worker keeps its own handlers)."""
    logging.basicConfig(level=log_level(level), format=FORMAT)
    # Every line passes roller.redact: no URL credential or registered secret is written,
    # whichever library formatted it.
    redact.install()
    # websocket-client logs whole frames at DEBUG: they carry tokens and signatures.
    logging.getLogger("websocket").setLevel(logging.WARNING)
    # urllib3 logs each request line at DEBUG: its path and query hold a hosted RPC's key.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def kv(**fields: object) -> str:
    """Render fields as `key=value` pairs; values with spaces are quoted."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' ="'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
