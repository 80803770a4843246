"""roller: a prover client for Scroll-style zk rollups on Celery.

`celery -A roller worker -Q gpu0` finds the Celery app here.
"""

from roller.celery_app import app

__all__ = ["app"]
