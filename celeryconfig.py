"""Celery settings for hour-long GPU proofs on a Redis broker.

Every client (listener, workers, Flower, `celery inspect`) loads this module, so the
transport options, above all the visibility timeout, are the same everywhere: the
shortest value among clients wins (see the memo in the design notes).
Broker URL and visibility timeout come from the roller config: the process's one config
(`$ROLLER_CONFIG`, loaded once by `roller.config.process_config`) for processes started by
the `celery` command, or `broker_settings(cfg)` applied by a process that was given
`--config` (the listener, `roller flower`).
"""

import os
from typing import Any

from roller.config import ENV_CONFIG, RollerConfig, process_config
from roller.errors import RollerError


def broker_settings(cfg: RollerConfig | None) -> dict[str, Any]:
    """The settings that follow from the config: broker URL and visibility timeout."""
    url = cfg.broker_url if cfg else "redis://127.0.0.1:6379/0"
    # Since the liveness rule (roller.lifecycle) re-drives a dead worker's task from its lease,
    # this only bounds how long a dead worker's stale message stays unacknowledged; it must
    # still exceed the longest proof plus queue wait, or kombu would hand a live job's
    # message to a second worker (which finds the lease held and acknowledges it unproved).
    visibility = cfg.visibility_timeout_seconds if cfg else 86400
    transport = {"visibility_timeout": visibility, "socket_keepalive": True}
    return {
        "broker_url": url,
        "result_backend": url,
        # kombu scans for unacked messages past the timeout every 10 s but, by default, acts
        # on only every 10th scan: a whole-node death would cost up to 100 s more.
        "broker_transport_options": {**transport, "unacked_restore_throttle": 1},
        "result_backend_transport_options": dict(transport),
        "visibility_timeout": visibility,
    }


def _config() -> RollerConfig | None:
    if not os.environ.get(ENV_CONFIG):
        return None
    try:
        return process_config()
    except RollerError:
        return None  # a worker's start check (roller.tasks) reports it in one line and exits


globals().update(broker_settings(_config()))

# JSON only: a pickled message is refused.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# At-least-once with one proof per worker: nothing waits behind a running proof.
task_acks_late = True
worker_prefetch_multiplier = 1
worker_concurrency = 1
task_reject_on_worker_lost = True
# A job that raises is acked: its record stays in `proving` without a lease, and the
# listener's reconciliation sends it again within its attempt budget.
task_acks_on_failure = True
task_acks_on_timeout = True
worker_cancel_long_running_tasks_on_connection_loss = False
# Outcomes live in the roller's Redis ledger (which also deduplicates redelivered jobs),
# so no Celery result is stored and the listener never waits on a result channel.
task_ignore_result = True

# Survive Redis outages instead of exiting.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None

# Warm shutdown lets the running proof finish; a forced stop requeues it after this grace.
worker_soft_shutdown_timeout = 60
worker_proc_alive_timeout = 60

# Flower needs task events.
worker_send_task_events = True
task_send_sent_event = True

# No default queue: every job names its slot's queue explicitly.
task_default_queue = "roller-unrouted"
