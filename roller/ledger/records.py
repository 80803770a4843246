"""Reading the records: one whole record, the small fields of the live ones, the latest ones
for `roller status`; timing notes onto a record; what a final record keeps, and for how long.

Memory rule (issue 31). A proof is about 174 KiB (a native chunk, batch or bundle proof's
JSON: 178,150 bytes, padded to one size), and a batch or bundle task carries its sub-proofs
in its body (twice on HTTP: decoded, and in the coordinator's task data). A final record keeps
none of that for its retention, only what tells the next assignment of the same task id
from a duplicate and caps its attempts:
- at the close (`finish`, `expire`: roller.ledger.transitions), the task body is cut to the
  task's id, type and generation (`slim_task`: block hashes, sub-proofs and the
  coordinator's task data only served proving, and a re-assignment brings its own), and the
  answer is dropped unless it is a valid proof the coordinator accepted (a failure report, a
  refused proof, an answer that expired undelivered is never sent again);
- that kept proof is what a re-assignment of the task id resubmits instead of proving
  again, which the coordinator does within the session window: it is dropped one window
  after its delivery (`prune`, from the listener's sweep), and a re-assignment after that
  proves again;
- the small record left expires after `retention_hours`.
So Redis holds the answers in flight, plus one window of delivered proofs, plus small records
for the retention: bounded by the task rate, whatever the retention.

Failure model: reads change nothing; a record that expired or was never written reads as
None (or is skipped in a list), and a Redis error reaches the caller. `prune` changes a
record only through a compare-and-set script: a proof whose task was re-assigned meanwhile
(or delivered again, later) is left alone; a sweep cut short by a Redis error leaves the
rest for the next one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from roller.ledger.keyspace import LedgerBase, LuaScript
from roller.ledger.states import LiveRow, Pruned, TaskRecord, TaskState
from roller.protocol.messages import ProofDetail, TaskMsg

# KEYS: task. ARGV: field, value, ... (timing facts onto an existing record only).
_NOTE = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], unpack(ARGV)) end
"""

# KEYS: kept, then the task key of each id. ARGV: cutoff, now, then the ids. Drops the proof
# of each delivered record whose delivery (its score in `kept`) is at or before the cutoff;
# an id re-assigned since is no longer in `kept` (assign removes it), one delivered again
# has a later score: both are left alone. Returns how many proofs were dropped.
_DROP_PROOFS = """
local cutoff, dropped = tonumber(ARGV[1]), 0
for i = 3, #ARGV do
  local score = redis.call('zscore', KEYS[1], ARGV[i])
  if score and tonumber(score) <= cutoff then
    redis.call('zrem', KEYS[1], ARGV[i])
    local key = KEYS[i - 1]
    if redis.call('hget', key, 'state') == 'delivered' then
      redis.call('hdel', key, 'proof', 'proof_ok')
      redis.call('hset', key, 'proof_dropped_at', ARGV[2])
      dropped = dropped + 1
    end
  end
end
return dropped
"""

# How many kept proofs one sweep drops at most: a sweep every few seconds drains any backlog
# (a listener that was down) many times faster than one slot delivers, in bounded scripts.
DROP_PER_SWEEP = 500


def slim_task(raw: str) -> str:
    """The body a final record keeps of its task JSON `raw`: the id, the type and, for an
    HTTP task, its generation, task id and type ('' if `raw` is not a task JSON object: the
    record keeps it as it is).

    Made of what every notification of one task id shares, so it is the same whichever
    notification it is cut from (the close need not compare bodies); what proving needed
    (block hashes, sub-proofs, the coordinator's task data) is what a re-assignment brings
    again, and nothing reads it from a final record."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict) or "id" not in body:
        return ""
    slim: dict[str, object] = {k: body[k] for k in ("id", "type") if k in body}
    http = body.get("http_task")
    if isinstance(http, str) and http:
        try:
            inner = json.loads(http)
        except ValueError:
            inner = None
        kept = ({k: inner[k] for k in ("generation", "task_id", "task_type") if k in inner}
                if isinstance(inner, dict) else {})
        # Never empty: an HTTP task must not read back as a WS one (`task_generation`).
        slim["http_task"] = json.dumps(kept or {"generation": "http"}, separators=(",", ":"))
    return json.dumps(slim, separators=(",", ":"))


class Records(LedgerBase):
    """The reads of the ledger, its timing notes and its retention."""

    _note = LuaScript(_NOTE)
    _drop_proofs = LuaScript(_DROP_PROOFS)

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

    def prune(self, slot: str, now: float | None = None, *, window_seconds: float) -> Pruned:
        """Forget final records past the retention (their hashes expire on their own), and
        drop the kept proofs delivered more than `window_seconds` (the session window) ago:
        no re-assignment resubmits them any more (see the module's memory rule)."""
        now = time.time() if now is None else now
        forgotten = int(self.r.zremrangebyscore(self._index("done", slot), "-inf",
                                                now - self.retention_seconds))
        kept = self._index("kept", slot)
        cutoff = now - window_seconds
        due = list(self.r.zrangebyscore(kept, "-inf", cutoff, start=0, num=DROP_PER_SWEEP))
        dropped = 0
        if due:
            dropped = int(self._drop_proofs(keys=[kept] + [self._key(slot, i) for i in due],
                                            args=[cutoff, now, *due]))
        return Pruned(forgotten, dropped)
