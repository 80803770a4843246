"""Structured logging: one `key=value` line per event, the same format in every process."""

import logging
import os

FORMAT = "ts=%(asctime)s level=%(levelname)s proc=%(processName)s logger=%(name)s %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once (the Celery worker keeps its own handlers)."""
    logging.basicConfig(level=(level or os.environ.get("ROLLER_LOG_LEVEL", "INFO")).upper(),
                        format=FORMAT)
    # websocket-client logs whole frames at DEBUG: they carry tokens and signatures.
    logging.getLogger("websocket").setLevel(logging.WARNING)


def kv(**fields: object) -> str:
    """Render fields as `key=value` pairs; values with spaces are quoted."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' ="'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
