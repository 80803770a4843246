"""The ledger's keys in Redis, the client its parts share, and how a part declares its scripts.

Keys (all prefixed `roller:`):
- `task:{slot}:{id}`  hash: the TaskMsg JSON, state, assignment, epoch, timestamps,
                      attempts, drive, owner (of the current attempt), outcome, proof.
                      Final records are slim (roller.ledger.records: the task body cut to
                      its id, type and generation, no answer but a delivered proof, itself
                      dropped a session window after delivery) and expire after the
                      retention.
- `live:{slot}`       sorted set of non-final task ids by receive time (start-up and
                      reconciliation touch only these).
- `done:{slot}`       sorted set of final task ids by finish time, trimmed to the retention.
- `kept:{slot}`       sorted set of delivered task ids whose record still keeps its proof,
                      by delivery time: what the sweep drops a window after (`prune`).
- `outbox:{slot}`     sorted set task id -> next submit time: answers not yet delivered.
- `proved`            list of `{slot}|{id}`: wakes the listener the moment a proof is stored.
- `lock:{slot}:{id}`  a renewed lease held while a job proves the task.
- `session:{slot}`    the slot's coordinator session (state, since, epoch, registrations).
- `unprovable:{slot}:{id}` the failure report of a task this identity cannot prove (24 h;
                      roller.ledger.unprovable).
- `fenced:{queue}`    why the queue's GPU is fenced (set by its worker, cleared by the next
                      worker that starts healthy); its slots ask for no work meanwhile.
- `slim:{slot}`       set once the final records of releases before slim records were
                      made slim (roller.ledger.migrate).

Every part of the ledger (roller.ledger.transitions, .records, .leases, .outbox, .sessions,
.unprovable, .migrate) is a `LedgerBase`: it reads and writes only through these key names, and each
declares the Lua scripts it runs as `LuaScript` attributes beside the code that runs them.
"""

from __future__ import annotations

from typing import Any, Self

import redis

PREFIX = "roller:"
WAKE_KEY = f"{PREFIX}proved"


class LuaScript:
    """One Lua script of a ledger part. redis-py's `register_script` only hashes the source
    (no round trip: the script reaches Redis with its first call, EVALSHA falling back to
    EVAL), so each ledger registers it on its own client at first use and keeps that."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ledger: LedgerBase | None, owner: type) -> Any:
        if ledger is None:
            return self
        script = ledger.r.register_script(self.source)
        # A non-data descriptor: the ledger's own attribute answers every later lookup.
        setattr(ledger, self.name, script)
        return script


class LedgerBase:
    """The Redis client and the key names every part of the ledger shares."""

    def __init__(self, client: redis.Redis, retention_seconds: float = 72 * 3600) -> None:
        # decode_responses=True: every value is str; redis-py's stubs cannot express that.
        self.r: Any = client
        self.retention_seconds = int(retention_seconds)

    @classmethod
    def from_url(cls, url: str, retention_seconds: float = 72 * 3600) -> Self:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30),
                   retention_seconds)

    @staticmethod
    def _key(slot: str, task_id: str) -> str:
        return f"{PREFIX}task:{slot}:{task_id}"

    @staticmethod
    def _lock(slot: str, task_id: str) -> str:
        return f"{PREFIX}lock:{slot}:{task_id}"

    @staticmethod
    def _index(kind: str, slot: str) -> str:
        return f"{PREFIX}{kind}:{slot}"

    def _closing_keys(self, slot: str, task_id: str) -> list[str]:
        return [self._key(slot, task_id), self._index("live", slot), self._index("done", slot),
                self._index("outbox", slot), self._index("kept", slot)]
