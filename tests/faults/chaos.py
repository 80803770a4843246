"""Chaos as a test (issue 31 item 7): overlapping seeded faults of every kind, on production
settings, while tasks are pushed continuously; then the judge, from both ledgers.

The cluster is the fault suite's (faultlib.start_cluster) with `production=True`: no override
but the listener's metrics port. Its two chunk slots each have a worker (`gpu0`, `gpu1`). The
run plays the process manager too (`supervise`, systemd's Restart=on-failure): a worker that
exits on its own (a pool-child kill that lands on its boot's prover check: status 3) is started
again 2 s later, and noted; the listener must never exit on its own.

The schedule (`plan`) is drawn up front from the seed: the fault window (from 5 s after the
start to `QUIET_S` before the end, so the last fault has ended and been recovered from before
the pushing stops) is cut into rounds of about `ROUND_S`; every round holds every fault kind
once, at a random time of the round, with a random length (and a random draw that picks its
target when it fires), so faults of different kinds overlap freely. Two faults never hold one
resource at once (one coordinator outage at a time, no freeze of a dead worker, one L2 burst at
a time): a fault whose resource is busy waits until it is free (`deferred`), or is dropped if it
would then end inside the quiet tail (`skipped`, counted). Meanwhile tasks (1-3 shipped blocks)
are pushed whenever fewer than `BACKLOG` pushed tasks are unanswered, until the end; then the
run drains: every pushed task must be answered in both ledgers.

The judge (`judge`), per task, from the coordinator's ledger (devnet /ledger) and ours (Redis):

- unanswered: a dispatch not ended by exactly one processed submission (one neither refused
  by the coordinator's checks nor abandoned by it when the connection closed mid-verification),
  a task never dispatched, or one answered at the coordinator but not final in our ledger;
- answered twice: more processed submissions than dispatches;
- invalid: a proof the coordinator's verifier refused;
- proved twice: proving runs (worker logs, capped by the attempts our ledger counted) beyond
  the one each assignment needs; forced where a kill (pool child, whole worker) or a freeze
  hit the task while a job held it (one extra run per hit), not forced otherwise (must be 0);
- failure reports: each processed report must be explained by an injected fault:
  `zk proving panic` by at least `retry.max_prove_attempts` jobs of the task killed, frozen or
  cut off by a Redis kill; `get traces failed` by the L2 down for the whole trace budget within
  the task's life (never, with 20 s bursts: the fetch retries through them); anything else is
  unexplained;
- memory flat: Redis `used_memory` sampled every `MEMORY_EVERY_S`; what the design retains
  (final records and their proofs, kept `retention_hours`; kombu's `unacked` messages of killed
  workers, kept the visibility timeout) is measured and set aside, and the rest (`residual`)
  may not grow by more than `MEMORY_BOUND` from the first quarter of the run to the last;
- nothing left in our ledger (live records, outbox), and every fault kind injected.

Printed besides (not judged): per kind the seconds from the fault to the coordinator's answer
of each task it reached, the re-drive delay after each whole-worker kill against the liveness
bound, and Redis's keys by shape before and after.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import random
import re
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from faultlib import FaultCluster

from roller.config import load_config
from roller.ledger import FINAL_STATES
from roller.lifecycle import LEASE_SECONDS, LIVENESS_GRACE_SECONDS
from roller.localrun import wait_for

POOL_KILL = "pool child SIGKILL"
WORKER_KILL = "whole worker SIGKILL + restart"
FREEZE = "worker frozen past its lease (SIGSTOP, SIGCONT)"
LISTENER_KILL = "listener SIGKILL + restart"
REDIS_KILL = "Redis SIGKILL + restart (AOF)"
COORD_OUTAGE = "coordinator outage (stop_for)"
COORD_RESTART = "coordinator restart"
DROP = "dropped connections"
L2_BURST = "L2 HTTP 500 burst (20 s)"
KINDS = (POOL_KILL, WORKER_KILL, FREEZE, LISTENER_KILL, REDIS_KILL, COORD_OUTAGE,
         COORD_RESTART, DROP, L2_BURST)
# Faults that may force a second proving run of a task a job holds (the brief: "where a
# freeze or a kill does not force it").
FORCING = (POOL_KILL, WORKER_KILL, FREEZE)
# Faults that can end a job's attempt (each counts against retry.max_prove_attempts).
ATTEMPT_ENDING = (POOL_KILL, WORKER_KILL, FREEZE, REDIS_KILL)

START_S = 5.0
QUIET_S = 45.0  # no fault in the last 45 s before the pushing stops: recovery time
ROUND_S = 130.0  # every fault kind once per round
BACKLOG = 4  # unanswered pushed tasks (2 per slot: one proving, one waiting at the coordinator)
L2_BURST_S = 20.0
POLL_S = 0.5
LEDGER_EVERY_S = 2.0
MEMORY_EVERY_S = 5.0
DRAIN_TIMEOUT_S = 420.0
SETTLE_S = 5.0
# See the module's docstring and docs/faults.md ("Chaos"): 2 MiB over a run.
MEMORY_BOUND = 2 * 2**20


def length(kind: str, rng: random.Random) -> float:
    """How long a fault of `kind` lasts: the outage, the freeze, or the time until the
    killed process is started again (0: the fault is one instant)."""
    return {
        POOL_KILL: 0.0,  # Celery starts a new pool child at once
        WORKER_KILL: rng.uniform(1, 5),  # systemd's RestartSec
        FREEZE: rng.uniform(20, 45),  # past the 15 s lease; re-driven after 25-35 s
        LISTENER_KILL: rng.uniform(1, 10),
        REDIS_KILL: rng.uniform(0.5, 5),
        COORD_OUTAGE: rng.uniform(10, 40),
        COORD_RESTART: 0.0,
        DROP: 0.0,
        L2_BURST: L2_BURST_S,
    }[kind]


@dataclass(order=True)
class Planned:
    at: float  # seconds from the start
    kind: str
    seconds: float
    pick: float  # a draw in [0, 1) that picks the target when the fault fires


def plan(rng: random.Random, duration_s: float) -> list[Planned]:
    """The run's faults, every kind once per round, at random times of the round."""
    window_end = duration_s - QUIET_S
    span = max(window_end - START_S, 1.0)
    rounds = max(1, round(span / ROUND_S))
    round_s = span / rounds
    out = []
    for n in range(rounds):
        begin = START_S + n * round_s
        for kind in KINDS:
            seconds = length(kind, rng)
            latest = max(begin, min(begin + round_s, window_end - seconds))
            out.append(Planned(rng.uniform(begin, latest), kind, seconds, rng.random()))
    return sorted(out)


@dataclass
class Injected:
    kind: str
    at: float  # seconds from the start
    target: str
    until: float  # seconds from the start (= at for an instant)
    affected: set[str] = field(default_factory=set)
    scope: str | None = None  # a queue: only its tasks; None: every task in flight
    open: bool = True


@dataclass
class Sample:
    at: float
    used: int
    retained: int
    clients: int

    @property
    def residual(self) -> int:
        return self.used - self.retained


def answers(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Submissions the coordinator processed: not refused by its checks, and not abandoned
    (the devnet drops a verification whose connection closed under it: `outcome` None, the
    session still waiting for an answer)."""
    return [s for s in task["submissions"] if not s.get("rejection") and s.get("outcome")]


def inventory(r: Any) -> dict[str, int]:
    """Redis keys by shape (task ids, uuids and numbers replaced by `*`)."""
    out: dict[str, int] = {}
    for key in r.scan_iter(count=1000):
        shape = re.sub(r"0x[0-9a-f]{8,}|[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "*", key)
        out[shape] = out.get(shape, 0) + 1
    return dict(sorted(out.items()))


class Chaos:
    """Runs the plan against a FaultCluster; `run()` then `judge()`."""

    def __init__(self, fc: FaultCluster, seed: int, minutes: float,
                 say: Callable[[str], None] = print) -> None:
        self.fc = fc
        self.seed = seed
        self.duration = minutes * 60
        self.say = say
        fc.rng = random.Random(seed + 1)  # task sizes: apart from the plan
        self.plan = plan(random.Random(seed), self.duration)
        self.cfg = load_config(fc.c.config)
        self.queue_of = {s.name: s.queue for s in self.cfg.slots}
        self.t0 = 0.0
        self.pushed: list[str] = []
        self.injected: list[Injected] = []
        self.deferred = 0
        self.skipped: list[Planned] = []
        self.samples: list[Sample] = []
        self.actions: list[tuple[float, int, str, Callable[[], None]]] = []
        self.seq = itertools.count()
        # Resources a fault holds: "coordinator", "l2", "listener", "redis", "worker:<q>".
        self.held: dict[str, Injected] = {}
        self.frozen: dict[str, tuple[int, bool]] = {}  # queue -> (pid, whole group)
        self.live: dict[str, tuple[str, str]] = {}  # task id -> (state, queue), from Redis
        self.coord: dict[str, dict[str, Any]] = {}  # the coordinator's ledger, by task id
        self.redis_up = True
        self.restarting: set[str] = set()  # processes the supervisor is starting again
        self.exits: list[str] = []  # processes that exited on their own (not our kill)

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def later(self, at: float, what: str, action: Callable[[], None]) -> None:
        heapq.heappush(self.actions, (at, next(self.seq), what, action))

    # -- reading the ledgers --------------------------------------------------------------

    def poll_redis(self) -> bool:
        live: dict[str, tuple[str, str]] = {}
        try:
            for slot in self.fc.slot_names:
                for row in self.fc.ledger.live_rows(slot):
                    live[row.task_id] = (str(row.state), self.queue_of[slot])
        except redis.RedisError:
            return False
        self.live = live
        return True

    def poll_coordinator(self) -> None:
        self.coord = self.fc.devnet_tasks()

    def in_flight(self, scope: str | None) -> set[str]:
        """Tasks a fault on `scope` (a queue) or on everything can reach now: on a queue,
        the records of its slots not yet proved; else every task dispatched and not yet
        answered at the coordinator, and every live record of ours."""
        pre_answer = ("received", "queued", "proving")
        if scope is not None:
            return {t for t, (state, q) in self.live.items() if q == scope and state in pre_answer}
        dispatched = {t for t, task in self.coord.items()
                      if task["dispatches"] and task["state"] not in ("verified", "failed")}
        return dispatched | set(self.live)

    def unanswered(self) -> int:
        return sum(1 for t in self.pushed
                   if self.coord.get(t, {}).get("state") not in ("verified", "failed"))

    # -- memory -----------------------------------------------------------------------------

    def sample_memory(self) -> None:
        r = self.fc.ledger.r
        try:
            keys = [f"roller:task:{slot}:{t}" for slot in self.fc.slot_names
                    for t in r.zrange(f"roller:done:{slot}", 0, -1)]
            keys += [f"roller:{kind}:{slot}" for kind in ("done", "kept")
                     for slot in self.fc.slot_names]
            keys += ["unacked", "unacked_index"]
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
            retained = sum(int(n or 0) for n in pipe.execute())
            used = int(r.info("memory")["used_memory"])
            clients = int(r.info("clients")["connected_clients"])
        except redis.RedisError:
            return
        self.samples.append(Sample(self.now(), used, retained, clients))

    # -- the faults ---------------------------------------------------------------------

    def start(self, p: Planned) -> None:
        """Fire a planned fault now, or defer it while its resource is held."""
        kind, now = p.kind, self.now()
        worker_kinds = (POOL_KILL, WORKER_KILL, FREEZE)
        if kind in worker_kinds:
            queue = self.pick_queue(kind, p.pick)
            resource = f"worker:{queue}" if queue else "worker:*"
        else:
            queue = None
            resource = {LISTENER_KILL: "listener", REDIS_KILL: "redis", L2_BURST: "l2"}.get(
                kind, "coordinator")
        # A worker fault waits only when no worker can take it (pick_queue knows which
        # overlaps it allows: a kill of a frozen worker, not a freeze of a dead one).
        busy = queue is None if kind in worker_kinds else resource in self.held
        if busy:
            free_at = max((i.until for i in self.held.values()), default=now) \
                if resource == "worker:*" else self.held[resource].until
            retry_at = max(free_at, now) + 1 + random.Random(p.pick).uniform(0, 2)
            if retry_at + p.seconds > self.duration - QUIET_S:
                self.skipped.append(p)
                self.say(f"[{now:7.1f}s] skipped {kind}: its resource stays held")
                return
            self.deferred += 1
            self.later(retry_at, f"start {kind}", functools.partial(self.start, p))
            return
        self.poll_redis()
        inj = Injected(kind, now, queue or "", now + p.seconds, scope=queue)
        inj.affected = self.in_flight(queue)
        getattr(self, "do_" + {
            POOL_KILL: "pool_kill", WORKER_KILL: "worker_kill", FREEZE: "freeze",
            LISTENER_KILL: "listener_kill", REDIS_KILL: "redis_kill",
            COORD_OUTAGE: "coord_outage", COORD_RESTART: "coord_restart", DROP: "drop",
            L2_BURST: "l2_burst"}[kind])(inj, p)
        self.injected.append(inj)
        if p.seconds <= 0:
            inj.open = False
        self.say(f"[{now:7.1f}s {time.strftime('%H:%M:%S')}] "
                 f"{kind}{' ' + inj.target if inj.target else ''}"
                 f"{f' for {p.seconds:.1f} s' if p.seconds else ''}: "
                 f"{len(inj.affected)} task(s) in reach")

    def pick_queue(self, kind: str, pick: float) -> str | None:
        """A queue whose worker the fault can hit now: one proving a task if any (`pick`
        chooses among them), a live one otherwise; None if none."""
        queues = [q for q in self.fc.queues if f"worker:{q}" not in self.held
                  or (kind != FREEZE and q in self.frozen)]
        queues = [q for q in queues if self.fc.worker(q).alive()]
        if kind == FREEZE:
            queues = [q for q in queues if q not in self.frozen]
        busy = [q for q in queues if any(state == "proving" and q2 == q
                                         for state, q2 in self.live.values())]
        choice = busy or queues
        return choice[int(pick * len(choice))] if choice else None

    def hold(self, resource: str, inj: Injected) -> None:
        self.held[resource] = inj

    def release(self, resource: str, inj: Injected) -> None:
        if self.held.get(resource) is inj:
            del self.held[resource]
        inj.open = False

    def do_pool_kill(self, inj: Injected, _p: Planned) -> None:
        worker = self.fc.worker(inj.target)
        children = self.fc.children(worker.pid)
        for child in children:
            os.kill(child, signal.SIGKILL)
        frozen = self.frozen.get(inj.target)
        if frozen and not frozen[1] and frozen[0] in children:
            self.frozen.pop(inj.target)  # its frozen pool child is dead: nothing to thaw
        inj.target += f" (pid {','.join(map(str, children)) or 'none'})"

    def do_worker_kill(self, inj: Injected, p: Planned) -> None:
        queue = inj.target
        self.fc.worker(queue).kill()
        self.frozen.pop(queue, None)  # SIGKILL ends a freeze too
        thaw = self.held.get(f"worker:{queue}")
        if thaw is not None:
            thaw.open = False
        self.hold(f"worker:{queue}", inj)

        def restart() -> None:
            self.fc.c.start_worker(queue)
            self.release(f"worker:{queue}", inj)

        self.later(inj.until, f"restart worker {queue}", restart)

    def do_freeze(self, inj: Injected, p: Planned) -> None:
        queue = inj.target
        worker = self.fc.worker(queue)
        children = self.fc.children(worker.pid)
        whole = p.pick >= 0.5 or not children
        pid = worker.pid if whole else children[0]
        if whole:
            os.killpg(pid, signal.SIGSTOP)
        else:
            os.kill(pid, signal.SIGSTOP)
        inj.target += " (whole worker)" if whole else f" (pool child {pid})"
        self.frozen[queue] = (pid, whole)
        self.hold(f"worker:{queue}", inj)

        def thaw() -> None:
            if self.frozen.get(queue) == (pid, whole):
                del self.frozen[queue]
                try:
                    (os.killpg if whole else os.kill)(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.release(f"worker:{queue}", inj)

        self.later(inj.until, f"thaw worker {queue}", thaw)

    def do_listener_kill(self, inj: Injected, _p: Planned) -> None:
        assert self.fc.c.listener is not None
        self.fc.c.listener.kill()
        self.hold("listener", inj)

        def restart() -> None:
            self.fc.c.start_listener()
            self.release("listener", inj)

        self.later(inj.until, "restart listener", restart)

    def do_redis_kill(self, inj: Injected, _p: Planned) -> None:
        proc = self.fc.c.redis.proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.stop()  # reaps it
        self.redis_up = False
        self.hold("redis", inj)

        def restart() -> None:
            self.fc.c.redis.start(timeout=60)
            self.redis_up = True
            self.release("redis", inj)

        self.later(inj.until, "restart redis", restart)

    def do_coord_outage(self, inj: Injected, p: Planned) -> None:
        self.fc.c.devnet.control("stop_for", {"seconds": p.seconds})
        # The devnet brings it back itself; one more second before the next coordinator fault.
        inj.until += 1
        self.hold("coordinator", inj)
        self.later(inj.until, "coordinator back", lambda: self.release("coordinator", inj))

    def do_coord_restart(self, _inj: Injected, _p: Planned) -> None:
        self.fc.c.devnet.control("restart", {})

    def do_drop(self, inj: Injected, _p: Planned) -> None:
        dropped = self.fc.c.devnet.control("drop_connections", {})["dropped"]
        inj.target = f"{dropped} connection(s)"

    def do_l2_burst(self, inj: Injected, _p: Planned) -> None:
        self.fc.c.devnet.control("l2_fault", {"mode": "http500"})
        self.hold("l2", inj)

        def end() -> None:
            self.fc.c.devnet.control("l2_fault", {"mode": "none"})
            self.release("l2", inj)

        self.later(inj.until, "L2 back", end)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        self.say(f"chaos seed={self.seed} (replay: ROLLER_CHAOS_SEED={self.seed}), "
                 f"{self.duration / 60:g} min, {len(self.plan)} faults planned, "
                 "production settings")
        # Every worker booted (its prover checked, Celery consuming) before the first fault.
        wait_for(lambda: all(re.search(r"@\S+ ready\.", self.fc.worker(q).output())
                             for q in self.fc.queues), 300, "every worker to be ready", 0.5)
        self.keys_before = inventory(self.fc.ledger.r)
        self.t0 = time.monotonic()
        for p in self.plan:
            self.later(p.at, f"start {p.kind}", functools.partial(self.start, p))
        next_ledger = next_memory = 0.0
        try:
            while self.now() < self.duration:
                self.step()
                if self.now() >= next_ledger:
                    self.poll_coordinator()
                    next_ledger = self.now() + LEDGER_EVERY_S
                    while self.unanswered() < BACKLOG:
                        self.pushed.append(self.fc.push())
                        self.coord[self.pushed[-1]] = {"state": "unassigned", "dispatches": []}
                if self.now() >= next_memory:
                    self.sample_memory()
                    next_memory = self.now() + MEMORY_EVERY_S
                time.sleep(POLL_S)
        finally:
            self.restore()
        self.drain()

    def step(self) -> None:
        self.due()
        self.supervise()
        if self.redis_up:
            self.poll_redis()
        for inj in self.injected:
            if inj.open:
                inj.affected |= self.in_flight(inj.scope)

    def due(self) -> None:
        while self.actions and self.actions[0][0] <= self.now():
            _, _, _what, action = heapq.heappop(self.actions)
            action()

    def supervise(self) -> None:
        """The process manager (systemd's Restart=on-failure, RestartSec 2 s): a worker or
        the listener that exited without our kill (a worker whose boot check a pool-child
        kill hit exits with status 3) is started again, and noted."""
        procs = {f"worker:{q}": self.fc.worker(q) for q in self.fc.queues}
        if self.fc.c.listener is not None:
            procs["listener"] = self.fc.c.listener
        for name, proc in procs.items():
            held = self.held.get(name)
            if (proc.alive() or name in self.restarting
                    or held is not None and held.kind in (WORKER_KILL, LISTENER_KILL)):
                continue
            assert proc.popen is not None
            self.exits.append(f"{name} exited with status {proc.popen.returncode} at "
                              f"{self.now():.0f} s")
            self.say(f"[{self.now():7.1f}s] supervisor: {self.exits[-1]}, starting it again")
            self.restarting.add(name)

            def restart(name: str = name) -> None:
                if name == "listener":
                    self.fc.c.start_listener()
                else:
                    self.fc.c.start_worker(name.split(":", 1)[1])
                self.restarting.discard(name)

            self.later(self.now() + 2, f"supervisor restarts {name}", restart)

    def restore(self) -> None:
        """End whatever is still in progress (its end action now) and drop planned faults
        that have not started."""
        pending = sorted(self.actions)
        self.actions = []
        for _, _, what, action in pending:
            if not what.startswith("start "):
                action()
            else:
                self.skipped.append(Planned(self.now(), what[len("start "):], 0, 0))
        for inj in self.injected:
            inj.open = False

    def final(self, task_id: str) -> bool:
        task = self.coord.get(task_id)
        if task is None or task["state"] not in ("verified", "failed"):
            return False
        if len(answers(task)) < len(task["dispatches"]):
            return False
        rec = self.fc.rec(task_id)
        return rec is not None and rec.state in FINAL_STATES

    def drain(self) -> None:
        started = time.monotonic()
        deadline = started + DRAIN_TIMEOUT_S
        next_memory = 0.0
        while time.monotonic() < deadline:
            self.due()
            self.supervise()
            self.poll_coordinator()
            try:
                if all(self.final(t) for t in self.pushed):
                    break
            except redis.RedisError:
                pass
            if self.now() >= next_memory:
                self.sample_memory()
                next_memory = self.now() + MEMORY_EVERY_S
            time.sleep(1)
        self.drained_s = time.monotonic() - started
        time.sleep(SETTLE_S)  # a late second answer would land now
        self.poll_coordinator()
        self.sample_memory()
        self.say(f"[{self.now():7.1f}s] drained in {self.drained_s:.0f} s")

    # -- the judge ----------------------------------------------------------------------

    def judge(self) -> Judgement:
        fc = self.fc
        logs = "".join(w.output() for w in [*fc.c.workers.values(), *fc.extra_workers])
        retry = self.cfg.retry
        t0_wall = time.time() - self.now()
        j = Judgement(seed=self.seed, minutes=self.duration / 60, pushed=len(self.pushed),
                      drained_s=getattr(self, "drained_s", 0.0), deferred=self.deferred,
                      skipped=len(self.skipped),
                      reconcile_s=self.cfg.reconcile_interval_seconds)
        for kind in KINDS:
            events = [i for i in self.injected if i.kind == kind]
            row = j.kinds[kind] = KindRow(kind, len(events),
                                          set().union(*(i.affected for i in events)))
            for i in events:
                for task_id in i.affected:
                    subs = answers(self.coord.get(task_id) or {"submissions": []})
                    if subs:
                        row.answered_s.append(max(0.0, subs[-1]["at"] - (t0_wall + i.at)))
        j.redrives = self.redrive_delays(t0_wall)
        for task_id in self.pushed:
            task = self.coord.get(task_id)
            rec = fc.rec(task_id)
            short = task_id[:12]
            if task is None or rec is None:
                j.unanswered.append(f"{short} coordinator={task is not None} ours={rec}")
                continue
            subs = answers(task)
            dispatches = len(task["dispatches"])
            refused = sum(1 for s in task["submissions"] if s.get("rejection"))
            j.rejected += refused
            j.abandoned += len(task["submissions"]) - len(subs) - refused
            if (not dispatches or len(subs) < dispatches
                    or task["state"] not in ("verified", "failed")):
                j.unanswered.append(f"{short} coordinator={task['state']} dispatches="
                                    f"{dispatches} answers={len(subs)} ours={rec.state}")
            elif rec.state not in FINAL_STATES:
                j.unanswered.append(f"{short} answered at the coordinator ({task['state']}) "
                                    f"but not final in our ledger: ours={rec.state}, "
                                    f"{refused} resubmission(s) refused")
            if len(subs) > dispatches:
                j.twice.append(f"{short} {len(subs)} answers to {dispatches} dispatches: "
                               f"{[s['outcome'] for s in subs]}")
            accepted = [s for s in subs if s["status"] == 0 and s["valid"] is True]
            invalid = [s for s in subs if s["status"] == 0 and s["valid"] is not True]
            reports = [s for s in subs if s["status"] != 0]
            j.accepted += bool(accepted)
            j.invalid += [f"{short} {s['outcome']} {s.get('reason')}" for s in invalid]
            hits = [i for i in self.injected if task_id in i.affected]
            runs = min(rec.total_attempts, fc.proving_runs(task_id, logs))
            needed = 1 + sum(1 for s in subs[:-1] if s["status"] != 0)
            extra = max(0, runs - needed)
            forcing = [i for i in hits if i.kind in FORCING]
            forced = min(extra, len(forcing))
            by_kill = min(forced, sum(1 for i in forcing if i.kind != FREEZE))
            j.forced += forced
            j.forced_by_freeze += forced - by_kill
            if extra:
                j.reproved.append(f"{short} {runs} proving runs: " + ", ".join(
                    f"{i.kind} at {i.at:.0f} s" for i in hits if i.kind in ATTEMPT_ENDING))
            if extra > forced:
                j.unforced.append(f"{short} {runs} proving runs, {needed} needed, "
                                  f"hit by {[i.kind for i in hits]}")
            for i in forcing:
                if extra:
                    j.kinds[i.kind].reproved.add(task_id)
            life = (task["dispatches"][0]["at"] if dispatches else task["created_at"],
                    subs[-1]["at"] if subs else time.time())
            for report in reports:
                why = self.explain(report["error"], hits, life, t0_wall,
                                   retry.max_prove_attempts, retry.trace_budget_seconds)
                (j.explained if why else j.unexplained).append(
                    f"{short} {report['error']!r}: {why or 'no injected fault explains it'}")
        try:
            j.left_live = sum(len(fc.ledger.live_ids(s)) for s in fc.slot_names)
            j.left_outbox = fc.ledger.outbox_size(*fc.slot_names)
        except redis.RedisError as exc:
            j.left_live = j.left_outbox = -1
            j.unanswered.append(f"our ledger unreadable at the end: {exc}")
        j.exits = list(self.exits)
        j.samples = list(self.samples)
        j.keys = (getattr(self, "keys_before", {}), inventory(fc.ledger.r))
        return j

    def redrive_delays(self, t0_wall: float) -> list[float]:
        """Seconds from each whole-worker kill to the listener's re-drive of each task the
        killed worker's job held (its `dead task re-driven` lines, every listener run)."""
        assert self.fc.c.listener is not None
        redriven: dict[str, list[float]] = {}
        for line in self.fc.c.listener.output().splitlines():
            if "dead task re-driven task_id=" in line and " ts=" in f" {line}":
                stamp = line.split("ts=", 1)[1].split(" level=", 1)[0]
                task_id = line.split("dead task re-driven task_id=", 1)[1].split()[0]
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                redriven.setdefault(task_id, []).append(at)
        delays = []
        for i in self.injected:
            if i.kind != WORKER_KILL:
                continue
            for task_id in i.affected:
                after = [at for at in redriven.get(task_id, []) if at >= t0_wall + i.at - 1]
                if after:
                    delays.append(min(after) - (t0_wall + i.at))
        return delays

    def explain(self, error: str, hits: list[Injected], life: tuple[float, float],
                t0_wall: float, max_attempts: int, budget: float) -> str:
        """The injected faults that explain a failure report, or '' if none does."""
        if "zk proving panic" in error or "attempt budget spent" in error:
            ended = [i.kind for i in hits if i.kind in ATTEMPT_ENDING]
            if len(ended) >= max_attempts:
                return f"{len(ended)} of its jobs ended by faults ({', '.join(ended)})"
            return ""
        if "get traces failed" in error:
            down = sum(max(0.0, min(t0_wall + i.until, life[1]) - max(t0_wall + i.at, life[0]))
                       for i in hits if i.kind == L2_BURST)
            if down >= budget:
                return f"the L2 down {down:.0f} s of its life (trace budget {budget:.0f} s)"
            return ""
        return ""


@dataclass
class KindRow:
    kind: str
    count: int
    affected: set[str]
    reproved: set[str] = field(default_factory=set)
    answered_s: list[float] = field(default_factory=list)

    def answered(self) -> str:
        if not self.answered_s:
            return "-"
        return f"{statistics.mean(self.answered_s):.0f} s (max {max(self.answered_s):.0f})"


@dataclass
class Judgement:
    seed: int
    minutes: float
    pushed: int
    drained_s: float
    deferred: int
    skipped: int
    reconcile_s: float
    kinds: dict[str, KindRow] = field(default_factory=dict)
    accepted: int = 0
    unanswered: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    forced: int = 0
    forced_by_freeze: int = 0
    reproved: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    redrives: list[float] = field(default_factory=list)
    unforced: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    rejected: int = 0
    abandoned: int = 0
    left_live: int = 0
    left_outbox: int = 0
    samples: list[Sample] = field(default_factory=list)
    keys: tuple[dict[str, int], dict[str, int]] = field(default_factory=lambda: ({}, {}))

    def memory_growth(self) -> int:
        """The residual's growth: the median of the last quarter of the samples minus the
        median of the first quarter (0 with too few samples to tell)."""
        if len(self.samples) < 8:
            return 0
        quarter = len(self.samples) // 4
        first = statistics.median(s.residual for s in self.samples[:quarter])
        last = statistics.median(s.residual for s in self.samples[-quarter:])
        return int(last - first)

    def missing_kinds(self) -> list[str]:
        return [k for k, row in self.kinds.items() if row.count == 0]

    def failures(self) -> list[str]:
        out = []
        for what, items in (("unanswered", self.unanswered), ("answered twice", self.twice),
                            ("invalid proof", self.invalid),
                            ("proved twice, not forced", self.unforced),
                            ("unexplained report", self.unexplained)):
            out += [f"{what}: {item}" for item in items]
        if self.left_live or self.left_outbox:
            out.append(f"left in our ledger: {self.left_live} live record(s), "
                       f"{self.left_outbox} answer(s) in the outbox")
        if self.memory_growth() > MEMORY_BOUND:
            out.append(f"Redis memory grew {mib(self.memory_growth())} beyond what the "
                       f"ledger retains (bound {mib(MEMORY_BOUND)})")
        out += [f"fault kind never injected: {k}" for k in self.missing_kinds()]
        # The listener survives everything but a kill (a worker may exit at boot when a
        # pool-child kill hits its prover check: the process manager starts it again).
        out += [f"exited on its own: {e}" for e in self.exits if e.startswith("listener")]
        return out

    def table(self) -> str:
        head = ("fault kind", "count", "tasks affected", "re-proved", "answered after")
        body = [(r.kind, str(r.count), str(len(r.affected)),
                 str(len(r.reproved)) if r.kind in FORCING else "-", r.answered())
                for r in self.kinds.values()]
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

        def line(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(head), sep, *(line(b) for b in body)])

    def totals(self) -> list[str]:
        answered = self.pushed - len(self.unanswered)
        reports = len(self.explained) + len(self.unexplained)
        s = self.samples
        lines = [
            f"seed {self.seed} (replay: ROLLER_CHAOS_SEED={self.seed}), {self.minutes:g} min, "
            f"{sum(r.count for r in self.kinds.values())} faults injected "
            f"({self.deferred} deferred while their resource was held, {self.skipped} "
            f"skipped), drained in {self.drained_s:.0f} s",
            f"tasks pushed {self.pushed}, answered {answered} (accepted {self.accepted}, "
            f"failure reports {reports}), unanswered {len(self.unanswered)}, answered twice "
            f"{len(self.twice)}, invalid proofs {len(self.invalid)}; submissions refused by "
            f"the coordinator's checks {self.rejected}, abandoned by it (connection closed "
            f"mid-verification) {self.abandoned}",
            f"proved twice: forced {self.forced} (by a kill {self.forced - self.forced_by_freeze},"
            f" by a freeze {self.forced_by_freeze}), not forced {len(self.unforced)}",
            *(f"  re-proved: {r}" for r in self.reproved),
            f"failure reports {reports}: explained {len(self.explained)}, unexplained "
            f"{len(self.unexplained)}",
            *(f"  explained: {e}" for e in self.explained),
            *(f"  UNEXPLAINED: {e}" for e in self.unexplained),
            f"left in our ledger: {self.left_live} live record(s), {self.left_outbox} in the "
            "outbox",
            f"processes that exited on their own, started again (systemd-style): "
            f"{'; '.join(self.exits) or 'none'}",
        ]
        if s:
            lines.append(
                f"Redis used_memory: first {mib(s[0].used)}, last {mib(s[-1].used)}, max "
                f"{mib(max(x.used for x in s))} ({len(s)} samples); retained by design "
                f"(final records and proofs, kombu's unacked) {mib(s[0].retained)} -> "
                f"{mib(s[-1].retained)}; the rest {mib(s[0].residual)} -> "
                f"{mib(s[-1].residual)} (max {mib(max(x.residual for x in s))}), growth "
                f"{mib(self.memory_growth())} (bound {mib(MEMORY_BOUND)}); clients "
                f"{s[0].clients} -> {s[-1].clients} (max {max(x.clients for x in s)})")
        if self.redrives:
            bound = LEASE_SECONDS + LIVENESS_GRACE_SECONDS + 2 * self.reconcile_s
            lines.append(
                f"re-driven after a whole-worker kill: {len(self.redrives)} task(s), "
                f"{statistics.mean(self.redrives):.0f} s (max {max(self.redrives):.0f}); "
                f"{sum(1 for d in self.redrives if d > bound + 1)} past the {bound:.0f} s "
                f"bound (lease {LEASE_SECONDS} s + grace {LIVENESS_GRACE_SECONDS:.0f} s + 2 "
                f"sweeps of {self.reconcile_s:g} s)")
        before, after = self.keys
        lines.append("Redis keys by shape, before -> after: " + ", ".join(
            f"{k} {before.get(k, 0)} -> {after.get(k, 0)}" for k in sorted({*before, *after})))
        return lines

    def report(self) -> str:
        return "\n".join([self.table(), *self.totals(),
                          *(f"FAIL {f}" for f in self.failures())])


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"
