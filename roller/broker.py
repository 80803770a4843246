"""What the roller knows of Celery's broker: the errors it raises and kombu's Redis layout.

kombu's Redis transport keeps one list per queue and priority step (`gpu0`,
`gpu0\\x06\\x163`, ...) and one hash of messages delivered to a worker but not yet
acknowledged (`unacked`). The listener reads the lists to tell a job that waits from one
that is lost (roller.lifecycle: the `unacked` hash tells nothing about a worker being alive,
so only tests read it), and the metrics read them for queue depth. This is the one module
that knows kombu's private layout.
"""

from __future__ import annotations

import json
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


def waiting_job_ids(r: Any, queue: str) -> frozenset[str]:
    """The Celery job ids of the messages waiting in `queue`'s lists (not those a worker
    holds). The lists are short: a slot asks for work only while its queue has room."""
    pipe = r.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.lrange(key, 0, -1)
    ids = set()
    for chunk in pipe.execute():
        for raw in chunk:
            try:
                ids.add(str(json.loads(raw)["headers"]["id"]))
            except (ValueError, KeyError, TypeError):
                continue  # not a Celery job message: nothing of ours
    return frozenset(ids)
