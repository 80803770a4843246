"""The Celery application, configured from the top-level celeryconfig module."""

from celery import Celery

import roller.observe.worker_metrics  # noqa: F401  (the host's metrics endpoint)
import roller.worker.boot  # noqa: F401  (the worker's start: config, GPU pinning, prover check)
from roller.config import RollerConfig

app = Celery("roller", include=["roller.tasks"])
app.config_from_object("celeryconfig")


def configure(cfg: RollerConfig) -> Celery:
    """Point the app at `cfg`'s broker: for a process given `--config` rather than
    $ROLLER_CONFIG (the listener, `roller flower`)."""
    import celeryconfig

    app.conf.update(celeryconfig.broker_settings(cfg))
    return app
