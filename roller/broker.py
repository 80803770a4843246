"""What the roller knows of Celery's broker: the errors it raises and kombu's Redis layout.

kombu's Redis transport keeps one list per queue and priority step (`gpu0`,
`gpu0\\x06\\x163`, ...) and one hash of messages delivered to a worker but not yet
acknowledged (`unacked`). The listener reads both to tell a job that waits from one that
is lost, and the metrics read the lists for queue depth.
"""

from __future__ import annotations

from typing import Any

import celery.exceptions
import kombu.exceptions
import redis

# What Redis, kombu and Celery raise when the broker is down or drops a call; mapped to
# roller.errors.BrokerUnavailable where they cross into the roller.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError, kombu.exceptions.KombuError, celery.exceptions.CeleryError, OSError)

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"


def queue_keys(queue: str) -> list[str]:
    return [f"{queue}{PRIORITY_SEP}{step}" if step else queue for step in PRIORITY_STEPS]


def waiting_messages(r: Any, queue: str) -> str:
    """Every job message waiting in `queue` or held unacknowledged by a worker, as one text
    to search job ids in (messages are JSON; a job id is a UUID)."""
    pipe = r.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.lrange(key, 0, -1)
    pipe.hvals(UNACKED_KEY)
    out = pipe.execute()
    return "\n".join(str(m) for chunk in out for m in chunk)
