"""`roller status`: one table per slot from the Redis ledger, safe while the system runs.

Reads only small hash fields (never task or proof bodies) of each slot's most recent tasks,
so it stays cheap on a ledger with months of history.

On a GPU host with NVML (roller.observe.gpu), a GPU column beside each slot's state shows
its device measured now (utilisation, temperature), or why it is fenced; run elsewhere (no
NVML), the table has no GPU column. The slot's `gpu` is read as the index CUDA sees with
`CUDA_DEVICE_ORDER=PCI_BUS_ID`, which is NVML's index: the order the workers are pinned in.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import redis

from roller.config import RollerConfig, load_config
from roller.errors import RollerError
from roller.ledger import FINAL_STATES, TaskLedger, TaskState
from roller.observe import gpu
from roller.redact import describe

RECENT = 50
FIELDS = ("state", "received_at", "attempts", "outcome", "prove_seconds", "finished_at",
          "updated_at", "fork")
HEADER = ("SLOT", "QUEUE", "SESSION", "TASK", "STATE", "FORK", "AGE", "ATTEMPTS",
          "LAST PROOF", "OUTBOX")
PROVED_STATES = {TaskState.PROVED, *FINAL_STATES}
# The listener touches each registered slot every 5 s (listener.HEARTBEAT_SECONDS);
# silence this long means the listener is gone, whatever state it last wrote.
STALE_SESSION_SECONDS = 15.0


def duration(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def short_id(task_id: str) -> str:
    return task_id if len(task_id) <= 12 else task_id[:10] + "…"


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    fields: dict[str, str]

    @property
    def state(self) -> str:
        return self.fields.get("state") or ""

    def num(self, name: str) -> float | None:
        value = self.fields.get(name)
        return float(value) if value else None


@dataclass(frozen=True)
class SlotStatus:
    slot: str
    queue: str
    session: str
    current: TaskRow | None
    last: TaskRow | None
    outbox: int
    gpu: str | None = None  # the GPU cell; None: no GPU view on this host

    def cells(self, now: float) -> list[str]:
        cur = self.current
        received = cur.num("received_at") if cur else None
        return [self.slot, self.queue, self.session,
                short_id(cur.task_id) if cur else "-",
                cur.state if cur else "idle",
                *([self.gpu] if self.gpu is not None else []),
                # The hard fork its job proves under (noted when the proof starts).
                (cur.fields.get("fork") or "-") if cur else "-",
                duration(now - received) if received else "-",
                f"{int(cur.num('attempts') or 0)}" if cur else "-",
                self._last(now), str(self.outbox)]

    def _last(self, now: float) -> str:
        if self.last is None:
            return "-"
        seconds = self.last.num("prove_seconds")
        outcome = self.last.fields.get("outcome") or "in outbox"
        when = self.last.num("finished_at") or self.last.num("updated_at")
        parts = [f"{seconds:.1f}s" if seconds is not None else "-", outcome]
        if when:
            parts.append(f"{duration(now - when)} ago")
        return " ".join(parts)


def gpu_cell(nvml: gpu.Nvml, index: int | None) -> str:
    """The GPU column for a slot on GPU `index`: `87% 61C`, or what is wrong with it."""
    if index is None:
        return "-"
    try:
        refs = nvml.resolve(str(index))
        sample = nvml.sample(refs[0])
    except (RollerError, nvml.error):
        return f"no GPU {index}"
    reason = sample.fence_reason()
    if reason is not None:
        return f"FENCED {reason[0]}"
    parts = [f"{sample.utilization:.0%}" if sample.utilization is not None else "?%"]
    if sample.temperature is not None:
        parts.append(f"{sample.temperature:.0f}C")
    return " ".join(parts)


def collect(ledger: TaskLedger, cfg: RollerConfig, now: float,
            nvml: gpu.Nvml | None = None) -> list[SlotStatus]:
    statuses = []
    for slot in cfg.slots:
        rows = [TaskRow(task_id, fields)
                for task_id, fields in ledger.recent(slot.name, FIELDS, RECENT)]
        statuses.append(SlotStatus(
            slot=slot.name,
            queue=slot.queue,
            session=_session(ledger.session(slot.name), now),
            current=next((t for t in rows if t.state not in FINAL_STATES), None),
            last=max((t for t in rows if t.state in PROVED_STATES),
                     key=lambda t: t.num("updated_at") or 0, default=None),
            outbox=ledger.outbox_size(slot.name),
            gpu=gpu_cell(nvml, slot.gpu) if nvml is not None else None,
        ))
    return statuses


def _session(fields: dict[str, str], now: float) -> str:
    if not fields.get("state"):
        return "never seen"
    state = fields["state"]
    since = float(fields.get("since") or now)
    seen = float(fields.get("seen") or since)
    if state == "registered" and now - seen > STALE_SESSION_SECONDS:
        return f"disconnected {duration(now - seen)} (listener silent)"
    text = f"{state} {duration(now - since)}"
    generation = fields.get("generation")
    if state == "registered" and generation:
        text += f" {generation}"
        expires = float(fields.get("token_expires") or 0)
        if expires:
            left = expires - now
            text += f" token {duration(left)}" if left > 0 else " token expired"
    return text


def render(statuses: list[SlotStatus], now: float) -> str:
    header = list(HEADER)
    if any(s.gpu is not None for s in statuses):
        header.insert(header.index("STATE") + 1, "GPU")
    rows = [header, *(s.cells(now) for s in statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    backlog = sum(s.outbox for s in statuses)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return "\n".join([f"roller status at {stamp}: {len(statuses)} slot(s), "
                      f"outbox backlog {backlog}", *lines])


def snapshot(cfg: RollerConfig, ledger: TaskLedger, nvml: gpu.Nvml | None = None) -> str:
    now = time.time()
    return render(collect(ledger, cfg, now, nvml), now)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except RollerError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    ledger = TaskLedger(redis.Redis.from_url(cfg.broker_url, socket_timeout=10,
                                            decode_responses=True))
    nvml = gpu.load()
    try:
        while True:
            try:
                text, failed = snapshot(cfg, ledger, nvml), False
            except redis.RedisError as exc:
                text, failed = f"cannot read the ledger from Redis: {describe(exc)}", True
            if args.watch:
                # Clear the screen and redraw in place, like `watch`.
                sys.stdout.write("\033[H\033[2J")
            print(text, flush=True, file=sys.stderr if failed else sys.stdout)
            if not args.watch:
                return 1 if failed else 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="roller config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--watch", type=float, metavar="N", default=0,
                        help="redraw every N seconds until interrupted")

