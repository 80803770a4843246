"""`Devnet`: coordinator + L2 node + control API, run on a background thread.

    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in") as net:
        net.ws_url, net.l2_url, net.control_url
        net.push_task(block_hashes=[...]); net.ledger(); net.restart()

All coordinator state lives on one asyncio loop; the methods below are thread-safe
wrappers that run on it (they mirror the control API one to one).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from eth_utils import keccak

from roller.devnet.chainforks import ChainForks, default_chain_forks
from roller.devnet.control import ControlServer
from roller.devnet.coordinator import CoordinatorService, WsServer
from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.l2node import L2Node
from roller.devnet.metrics import Metrics
from roller.devnet.pool import RollerPool, TokenCache
from roller.devnet.sessions import SessionConfig, SessionManager
from roller.devnet.tasksource import (
    FAILED,
    UNASSIGNED,
    VERIFIED,
    TaskBook,
    TaskRecord,
    chunk_tasks,
)
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
from roller.devnet.verifier import make_verifier
from roller.errors import ConfigError, RollerError
from roller.forks import FORKS
from roller.protocol.encoding import parse_hash
from roller.protocol.http_enums import Generation
from roller.protocol.messages import AggProof, WsVariant

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class DevnetConfig:
    """Devnet settings; times in seconds (the real coordinator's collection_time is minutes)."""

    host: str = "127.0.0.1"
    ws_port: int = 8391
    l2_port: int = 8545
    control_port: int = 8392
    trace_dir: Path = DEFAULT_TRACE_DIR
    chunk_size: int = 10
    chunk_tasks: bool = True
    batch: bool = False
    # Chain of served traces that carry no chainID (2023 traces); None: the traces must say.
    chain_id: int | None = None
    token_ttl: float = 60.0
    collection_time: float = 180 * 60.0
    session_attempts: int = 2
    rollers_per_session: int = 1
    dispatch_interval: float = 2.0
    verifier: str = "auto"
    params_dir: Path | None = None
    ping_idle: float = 60.0
    compression_level: int = 9
    max_verifier_workers: int = 10
    seed: int | None = None
    # "ws" (default, the 2023-06 WS coordinator; also "ws-2023-06"), "ws-2023-07" (spec 8)
    # or an HTTP generation: http-h1/-h2/-h3.
    protocol: str = "ws"
    http_port: int = 8390
    challenge_ttl: float = 10.0
    login_ttl: float = 3600.0
    min_prover_version: str | None = None
    # Seconds each verification waits first (WS and HTTP; also /submit_delay at run time).
    verify_delay: float = 0.0
    # The chain's hard forks (Scroll's chain config: `--chain-config`); None: the generation's
    # own era from block 0 (darwinV2 for http-h3/h4, homestead before).
    chain_forks: ChainForks | None = None
    # Tests (HTTP H3+): serve Darwin/DarwinV2 batch tasks with this batch header field altered
    # (roller.devnet.batch_data.CORRUPTIBLE); None: the true header.
    corrupt_batch_header_field: str | None = None


@dataclass
class DevnetPorts:
    ws: int
    l2: int
    control: int
    http: int = 0


@dataclass
class _Runtime:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    executor: ThreadPoolExecutor
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class Devnet:
    def __init__(self, config: DevnetConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or DevnetConfig(), **overrides)
        cfg = self.config
        self.variant = ws_variant(cfg.protocol)
        self.index = load_trace_dir(cfg.trace_dir)
        # The native verifier recomputes each chunk task's info from the traces served here.
        self.verifier = make_verifier(cfg.verifier, cfg.params_dir, self.index, cfg.chain_id)
        self.metrics = Metrics()
        self.tokens = TokenCache(cfg.token_ttl)
        self.pool = RollerPool()
        self.forks = cfg.chain_forks or default_chain_forks(cfg.protocol)
        self.book = TaskBook(batch=cfg.batch)
        if cfg.chunk_tasks:
            for task in chunk_tasks(self.index, cfg.chunk_size, self.forks):
                self.book.add(task)
        self.l2 = L2Node(self.index, cfg.host, cfg.l2_port)
        self.control = ControlServer(self, cfg.host, cfg.control_port)
        self._rt: _Runtime | None = None
        self.sessions: SessionManager | None = None
        self.ws: WsServer | None = None
        self.ports: DevnetPorts | None = None
        self.http: HttpCoordinator | None = None
        self._up = False

    def _warm_vks(self) -> None:
        try:
            self.verifier.vks(self.chain_fork_names())
        except RollerError as exc:  # the first login meets it again, and answers it
            log.warning("verifier keys not built error=%s", exc)

    def chain_fork_names(self) -> tuple[str, ...]:
        """The forks of the chain's tasks (with its fork at genesis), in chain order."""
        names = {t.fork for t in self.book.tasks.values()} | {self.forks.fork_at(0, 0)}
        return tuple(sorted(names, key=FORKS.index))

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> DevnetPorts:
        cfg = self.config
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="devnet-loop", daemon=True)
        executor = ThreadPoolExecutor(max_workers=cfg.max_verifier_workers or 10,
                                      thread_name_prefix="devnet-verify")
        self._rt = _Runtime(loop, thread, executor)
        thread.start()
        self.sessions = SessionManager(
            SessionConfig(
                rollers_per_session=cfg.rollers_per_session,
                session_attempts=cfg.session_attempts or 2,
                collection_time=cfg.collection_time,
                submit_delay=cfg.verify_delay,
            ),
            self.pool, self.book, self.verifier, self.metrics, executor,
            random.Random(cfg.seed), self.variant,
        )
        self.ws = WsServer(
            CoordinatorService(self.tokens, self.pool, self.sessions, self.variant),
            cfg.ping_idle, cfg.compression_level)
        http_port = 0
        if cfg.protocol.startswith("http"):
            # HTTP generations: the WS server stays down; state changes run on the loop.
            self.http = HttpCoordinator(
                self.book, self.verifier,
                HttpCoordinatorConfig(
                    generation=Generation(cfg.protocol), challenge_ttl=cfg.challenge_ttl,
                    login_ttl=cfg.login_ttl, collection_time=cfg.collection_time,
                    session_attempts=cfg.session_attempts or 2,
                    min_prover_version=cfg.min_prover_version,
                    verify_delay=cfg.verify_delay, traces=self.index,
                    corrupt_batch_header_field=cfg.corrupt_batch_header_field,
                    forks=self.chain_fork_names()),
                run=self._call, rng=random.Random(cfg.seed))
            http_port = self.http.start(cfg.host, cfg.http_port)
            if Generation(cfg.protocol).rank >= 3:
                # The verifier keys its logins accept: built now, not inside the first login.
                threading.Thread(target=self._warm_vks, name="devnet-vks",
                                 daemon=True).start()
        ws_port = self._run(self._astart(cfg.ws_port))
        self.ports = DevnetPorts(ws=ws_port, l2=self.l2.start(), control=self.control.start(),
                                 http=http_port)
        log.info(
            "devnet started ws=%s l2=%s control=%s verifier=%s tasks=%d",
            self.ws_url, self.l2_url, self.control_url, self.verifier.name, len(self.book.tasks),
        )
        return self.ports

    async def _astart(self, port: int) -> int:
        assert self.ws is not None and self._rt is not None
        bound = await self.ws.start(self.config.host, port) if self.http is None else 0
        self._up = True
        self._rt.tasks.append(asyncio.create_task(self._dispatch_loop()))
        return bound

    async def _dispatch_loop(self) -> None:
        assert self.sessions is not None
        while True:
            await asyncio.sleep(self.config.dispatch_interval)
            if self._up:
                self.sessions.dispatch_round()

    def stop(self) -> None:
        if self._rt is None:
            return
        self.control.stop()
        self.l2.stop()
        self._run(self._astop())
        rt = self._rt
        rt.loop.call_soon_threadsafe(rt.loop.stop)
        rt.thread.join(timeout=10)
        rt.executor.shutdown(wait=False, cancel_futures=True)
        rt.loop.close()
        self._rt = None
        log.info("devnet stopped")

    async def _astop(self) -> None:
        assert self._rt is not None
        await self._coordinator_down()
        for task in self._rt.tasks:
            task.cancel()

    def __enter__(self) -> Devnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        assert self.ports is not None
        return f"ws://{self.config.host}:{self.ports.ws}/"

    @property
    def coordinator_url(self) -> str:
        """The coordinator's URL for the configured protocol (ws:// or http://)."""
        assert self.ports is not None
        if self.http is not None:
            return f"http://{self.config.host}:{self.ports.http}"
        return self.ws_url

    @property
    def l2_url(self) -> str:
        assert self.ports is not None
        return f"http://{self.config.host}:{self.ports.l2}/"

    @property
    def control_url(self) -> str:
        assert self.ports is not None
        return f"http://{self.config.host}:{self.ports.control}/"

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        if self._rt is None:
            coro.close()
            raise RuntimeError("devnet is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._rt.loop).result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self._run(wrapper())

    # -- coordinator outage and restart (spec 5.7) -------------------------------------

    async def _coordinator_down(self) -> None:
        assert self.ws is not None and self.sessions is not None
        self._up = False
        self.sessions.suspend()
        if self.http is not None:
            self.http.stop()
        else:
            await self.ws.stop()
        self.pool.clear()
        self.tokens.clear()

    async def _coordinator_up(self) -> None:
        assert self.ws is not None and self.sessions is not None and self.ports is not None
        if self.http is not None:
            # Same port, same JWT secret: tokens survive like on a real coordinator.
            self.http.start(self.config.host, self.ports.http)
        else:
            await self.ws.start(self.config.host, self.ports.ws)
        self.sessions.resume()
        self._up = True
        log.info("coordinator restarted sessions=%d", len(self.sessions.sessions))

    def restart(self) -> None:
        """Stop the WS server (connections dropped, pool and tokens empty), keep sessions,
        start again on the same port with fresh session timers."""
        async def go() -> None:
            await self._coordinator_down()
            await self._coordinator_up()

        self._run(go())

    def stop_for(self, seconds: float) -> None:
        """Take the coordinator down now and bring it back after `seconds` (returns at once)."""
        async def go() -> None:
            await self._coordinator_down()
            assert self._rt is not None
            self._rt.tasks.append(asyncio.create_task(self._later_up(seconds)))

        self._run(go())

    async def _later_up(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._coordinator_up()

    # -- scripted control (mirrors the control API) ----------------------------------

    def push_task(
        self,
        task_type: int = 0,
        block_hashes: Sequence[str] = (),
        sub_proofs: Sequence[AggProof | dict[str, Any]] = (),
        task_id: str | None = None,
    ) -> str:
        """Queue a task for dispatch; the id defaults to keccak of its content."""
        hashes = tuple(parse_hash(h, f"block_hashes[{i}]") for i, h in enumerate(block_hashes))
        proofs = tuple(p if isinstance(p, AggProof) else AggProof.from_json(p)
                       for p in sub_proofs)
        if task_type not in (0, 1):
            raise ValueError("task type must be 0 (basic) or 1 (aggregator)")

        def add() -> str:
            served = [self.index.by_hash[h] for h in hashes if h in self.index.by_hash]
            # The fork of its first block; a pushed batch names no block: the chain's fork
            # at genesis.
            fork = (self.forks.fork_at(served[0].number, served[0].timestamp) if served
                    else self.forks.fork_at(0, 0))
            record = TaskRecord(
                id=task_id or _pushed_id(hashes, proofs, len(self.book.tasks)),
                type=task_type, block_hashes=hashes, sub_proofs=proofs, source="pushed",
                block_numbers=tuple(e.number for e in served), fork=fork,
            )
            self.book.add(record)
            log.info("task pushed task_id=%s type=%s", record.id, task_type)
            return record.id

        return self._call(add)

    def requeue(self, task_id: str, pk: str | None = None) -> None:
        """An operator's re-queue on the real coordinator (proving_status back to
        unassigned): the same task id is assigned again, to `pk` when given (the same key
        that had it, as the real coordinator may do), else to any idle roller of its type."""
        assert self.sessions is not None
        sessions = self.sessions

        def requeue() -> None:
            task = self.book.get(task_id)
            if task is None:
                raise ValueError(f"no task {task_id}")
            if task.state not in (FAILED, VERIFIED):
                raise ValueError(f"task {task_id} is {task.state}; only a failed or verified "
                                 "task is re-queued (none is re-sent inside a live session)")
            sessions.close(task_id)
            task.state = UNASSIGNED
            task.pinned_pk = pk
            log.info("task re-queued task_id=%s pk=%s", task_id, pk or "any")

        self._call(requeue)

    def dispatch_now(self) -> None:
        assert self.sessions is not None
        self._call(self.sessions.dispatch_round)

    def drop_connections(self, pk: str | None = None) -> int:
        assert self.ws is not None
        ws = self.ws
        if self.http is not None:
            return 0  # HTTP has no connections to drop
        return self._call(lambda: ws.drop(pk))

    def set_submit_delay(self, seconds: float) -> None:
        assert self.sessions is not None
        self.sessions.config.submit_delay = float(seconds)
        if self.http is not None:
            self.http.config.verify_delay = float(seconds)

    def set_collection_time(self, seconds: float) -> None:
        """Applies to timers armed from now on."""
        assert self.sessions is not None
        self.sessions.config.collection_time = float(seconds)
        if self.http is not None:
            self.http.config.collection_time = float(seconds)

    def set_l2_fault(self, mode: str, count: int | None = None) -> None:
        self.l2.fault.set(mode, count)

    def ledger(self) -> dict[str, Any]:
        assert self.sessions is not None
        sessions = self.sessions

        def snap() -> dict[str, Any]:
            return {
                "tasks": self.book.ledger(),
                "unmatched_submissions": list(sessions.unmatched_submissions),
                "rollers": [n.info() for n in self.pool.nodes.values()],
                "sessions": [s.info() for s in sessions.sessions.values()],
                "coordinator_up": self._up,
                "l2_fault": self.l2.fault.info(),
                "verifier": self.verifier.name,
                "protocol": self.config.protocol,
                **({"http": self.http.info()} if self.http is not None else {}),
            }

        return self._call(snap)

    def metrics_snapshot(self) -> dict[str, Any]:
        return self._call(self.metrics.snapshot)

    def metrics_text(self) -> bytes:
        return self._call(self.metrics.prometheus_text)


def ws_variant(protocol: str) -> WsVariant:
    """The WS variant a devnet protocol name serves ("ws" is 2023-06; HTTP ones: unused)."""
    if protocol.startswith("ws-"):
        try:
            return WsVariant(protocol)
        except ValueError as exc:
            raise ConfigError(f"devnet protocol {protocol!r}: unknown WebSocket variant") from exc
    return WsVariant.WS_2023_06


def _pushed_id(hashes: tuple[str, ...], proofs: tuple[AggProof, ...], salt: int) -> str:
    material = b"".join(bytes.fromhex(h[2:]) for h in hashes)
    material += b"".join(p.proof for p in proofs) + salt.to_bytes(8, "big")
    return "0x" + keccak(material).hex()
