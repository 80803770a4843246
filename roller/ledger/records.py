"""Reading the records: one whole record, the small fields of the live ones, the latest ones
for `roller status`; timing notes onto a record; forgetting final records past the retention.

Failure model: reads change nothing; a record that expired or was never written reads as
None (or is skipped in a list), and a Redis error reaches the caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from roller.ledger.keyspace import LedgerBase, LuaScript
from roller.ledger.states import LiveRow, TaskRecord, TaskState
from roller.protocol.messages import ProofDetail, TaskMsg

# KEYS: task. ARGV: field, value, ... (timing facts onto an existing record only).
_NOTE = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], unpack(ARGV)) end
"""


class Records(LedgerBase):
    """The reads of the ledger, its timing notes and its retention."""

    _note = LuaScript(_NOTE)

    def get(self, slot: str, task_id: str) -> TaskRecord | None:
        raw = self.r.hgetall(self._key(slot, task_id))
        if not raw or "task" not in raw or "state" not in raw:
            return None
        return TaskRecord(
            slot=slot,
            task=TaskMsg.from_json(json.loads(raw["task"])),
            received_at=float(raw.get("received_at", 0)),
            state=TaskState(raw["state"]),
            assignment=int(raw.get("assignment", 1)),
            attempts=int(raw.get("attempts", 0)),
            total_attempts=int(raw.get("total_attempts", raw.get("attempts", 0))),
            proof=ProofDetail.from_json(json.loads(raw["proof"])) if raw.get("proof") else None,
            outcome=raw.get("outcome", ""),
            prove_seconds=float(raw["prove_seconds"]) if raw.get("prove_seconds") else None,
            worker=raw.get("worker", ""),
            queue=raw.get("queue", ""),
            updated_at=float(raw.get("updated_at") or raw.get("received_at") or 0),
            drive=int(raw.get("drive") or 0),
            owner=raw.get("owner", ""),
        )

    def live_ids(self, slot: str) -> list[str]:
        return list(self.r.zrange(self._index("live", slot), 0, -1))

    def task_ids(self, slot: str) -> list[str]:
        """Every task id the ledger holds for `slot` (in flight, then final ones kept)."""
        return self.live_ids(slot) + list(self.r.zrange(self._index("done", slot), 0, -1))

    def live_rows(self, slot: str) -> list[LiveRow]:
        """Small fields of every in-flight record, in two round trips."""
        ids = self.live_ids(slot)
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self._key(slot, task_id), "state", "updated_at", "received_at",
                       "drive")
            pipe.exists(self._lock(slot, task_id))
            pipe.zscore(self._index("outbox", slot), task_id)
        out = pipe.execute()
        rows = []
        for i, task_id in enumerate(ids):
            (state, updated, received, drive), leased, due = out[3 * i:3 * i + 3]
            if state:
                rows.append(LiveRow(slot, task_id, TaskState(state), float(updated or 0),
                                    float(received or 0), bool(leased), due is not None,
                                    int(drive or 0)))
        return rows

    def recent(self, slot: str, fields: Sequence[str], count: int
               ) -> list[tuple[str, dict[str, str]]]:
        """The `fields` of the slot's in-flight records and its `count` latest final ones,
        newest first (for `roller status`: never task or proof bodies)."""
        ids = (list(self.r.zrevrange(self._index("live", slot), 0, count - 1))
               + list(self.r.zrevrange(self._index("done", slot), 0, count - 1)))
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self._key(slot, task_id), list(fields))
        return [(task_id, {k: v for k, v in zip(fields, values, strict=True) if v})
                for task_id, values in zip(ids, pipe.execute(), strict=True)]

    def note(self, slot: str, task_id: str, **fields: str | float) -> None:
        """Record timing facts about a task (for `roller status` and the benchmarks); never
        the state, which only the transitions above change."""
        if "state" in fields:
            raise ValueError("note: the state changes only through a transition")
        # Only onto an existing record: a record that expired must not come back as a stub.
        args = [str(v) for pair in fields.items() for v in pair]
        self._note(keys=[self._key(slot, task_id)], args=args)

    # -- retention ------------------------------------------------------------------------

    def prune(self, slot: str, now: float | None = None) -> int:
        """Forget final records past the retention (their hashes expire on their own)."""
        cutoff = (now or time.time()) - self.retention_seconds
        return int(self.r.zremrangebyscore(self._index("done", slot), "-inf", cutoff))
