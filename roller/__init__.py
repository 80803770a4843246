"""roller: a prover client for Scroll-style zk rollups, on Celery.

`celery -A roller worker -Q gpu0` finds the Celery app here as `roller.app`, built on
first access: importing `roller` or any of its libraries (`roller.protocol`,
`roller.ledger`) loads no Celery and connects no worker signal.
"""

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from roller.celery_app import app

        return app
    raise AttributeError(f"module 'roller' has no attribute {name!r}")
