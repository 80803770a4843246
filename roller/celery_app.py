"""The Celery application, configured from the top-level celeryconfig module."""

from celery import Celery

import roller.gpu  # noqa: F401  (connects GPU pinning before the worker forks)
import roller.worker_metrics  # noqa: F401  (the host's metrics endpoint)

app = Celery("roller", include=["roller.tasks"])
app.config_from_object("celeryconfig")
