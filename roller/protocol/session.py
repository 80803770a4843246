"""One interface over every coordinator generation, as the listener drives it.

`CoordinatorSession` is what a slot's listener holds: ``open`` (register/login, start task
delivery), ``submit``, ``poke``, ``close``. Two implementations:

- `WsCoordinatorSession`: a thin adapter over the unchanged WS `CoordinatorClient`
  (token request + subscribe; tasks are pushed; ``poke`` does nothing). It marks the WS
  refusals no retry can cure as ``permanent`` (the Go texts are listed here).
- `HttpCoordinatorSession`: `HttpCoordinatorClient` plus a poll thread. It asks for a task
  only when ``idle()`` says the slot has nothing in flight, because the coordinator keeps
  one assigned task per key (and v4.1.1..32 would hand out one more on every call);
  ``poke()`` (the listener's, once an answer has left the outbox) asks at once.

The session keeps no task state: ``submit`` gets the TaskMsg the ledger recorded (its
``http_task`` names the HTTP assignment), so an answer stored before a listener restart is
submitted by the next listener's session like any other.

Failure model (HTTP): ``open`` logs in synchronously and raises ConnectionLost,
WrongGeneration or the mapped CoordinatorError; afterwards the poll thread never raises.
A transport failure (or a re-login under a foreign key) marks the session disconnected
(``connected`` False) and the thread ends; the listener reopens. 20004 waits
``poll_interval``; 20002 and other refusals wait ``refused_interval`` and are logged as
warnings; an L2 head that cannot be read skips one poll. After a failure report the coordinator
took, the next get_task waits ``failure_backoff`` (doubling per consecutive report, capped;
a delivered proof resets it), and a ``poke`` does not cut that wait short. ``submit``
raises ConnectionLost (retry later), WireFormatError (the task is not one this generation
can answer: final), or a CoordinatorError whose ``permanent`` flag says whether the submission
is final.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from eth_account.signers.local import LocalAccount

from roller.errors import (
    ConnectionLost,
    CoordinatorError,
    RollerError,
    TraceFetchError,
    WireFormatError,
    WrongGeneration,
)
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import FailureType, TaskType
from roller.protocol.http_messages import SubmitProofRequest, from_task_msg, to_task_msg
from roller.protocol.http_proofs import encode_proof
from roller.protocol.messages import ProofDetail, ProofMsg, RespStatus, TaskMsg

log = logging.getLogger(__name__)

# WS refusals that no retry can cure: the session is gone or our message is wrong (Go texts
# of the 2023 coordinator, spec coordinator-protocol 2.3).
WS_PERMANENT_REFUSALS = (
    "does not existID", "is not eligible to partake", "auth signature verify fail",
    # ws-2023-07 (spec 8): no assignment of this task to this key exists in its database.
    "validator failure get none prover task for the proof",
)
# Spec 8.4: sleep 10-20 s on "no task", longer on refusals (already assigned, blocked).
DEFAULT_POLL_INTERVAL = 15.0
DEFAULT_REFUSED_INTERVAL = 60.0
# After a failure report H2/H3 hand the same task straight back, to us too (spec 4.1, 8.4):
# the slot waits this long before asking again, doubling per consecutive failure report up to
# the cap, so one roller does not spend a shared coordinator's `session_attempts` (5) on a task
# in seconds and leaves other provers time to take it.
DEFAULT_FAILURE_BACKOFF = 30.0
DEFAULT_FAILURE_BACKOFF_MAX = 1800.0


class CoordinatorSession(Protocol):
    generation: str

    def open(self, on_task: Callable[[TaskMsg], None], idle: Callable[[], bool]) -> None: ...

    @property
    def connected(self) -> bool: ...

    @property
    def token_expires(self) -> float | None:
        """Unix time the login token expires (HTTP), None where there is none (WS)."""
        ...

    def submit(self, task: TaskMsg, detail: ProofDetail, account: LocalAccount) -> None: ...

    def poke(self) -> None: ...

    def close(self) -> None: ...


class WsCoordinatorSession:
    """The 2023 WS protocol behind the session interface; `client` is used as is."""

    def __init__(self, client: CoordinatorClient, account: LocalAccount, name: str,
                 roller_type: int, version: str) -> None:
        self.generation: str = client.variant.value
        self.client = client
        self._account = account
        self.name = name
        self.roller_type = roller_type
        self.version = version

    def open(self, on_task: Callable[[TaskMsg], None], idle: Callable[[], bool]) -> None:
        # The coordinator pushes tasks itself; `idle` matters only to polling generations.
        self.client.connect()
        self.client.register(self._account, self.name, self.roller_type, self.version, on_task)

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def token_expires(self) -> float | None:
        return None

    def submit(self, task: TaskMsg, detail: ProofDetail, account: LocalAccount) -> None:
        try:
            self.client.submit_proof(ProofMsg.signed(detail, account, self.client.variant))
        except CoordinatorError as exc:
            exc.permanent = any(text in exc.message for text in WS_PERMANENT_REFUSALS)
            raise

    def poke(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.client.unsubscribe()
        except RollerError as exc:
            log.info("unsubscribe failed slot=%s error=%s", self.client.slot, exc)
        self.client.close()


def submit_request(detail: ProofDetail, task: TaskMsg) -> SubmitProofRequest:
    """The submit_proof body for a listener-side ProofDetail of an HTTP task."""
    answer = from_task_msg(task)
    if detail.id != task.id:
        raise WireFormatError("id", f"proof for {detail.id!r} does not belong to {task.id!r}")
    if detail.status == RespStatus.OK:
        if detail.proof is None:
            raise WireFormatError("proof", "a successful proof detail carries no proof")
        # The generation's own proof shape: the coordinator keeps only its Go struct's members
        # and serves them back inside batch/bundle tasks (http_proofs).
        proof = encode_proof(answer.generation, answer.task_type, answer.task_id, detail.proof)
        return SubmitProofRequest.success(answer, proof)
    # A roller-side error is not a prover panic (the SDK always says panic, spec 9).
    return SubmitProofRequest.failure(answer, detail.error or "proving failed",
                                      FailureType.NO_PANIC)


class HttpCoordinatorSession:
    """A polling session for one slot's key."""

    def __init__(
        self,
        client: HttpCoordinatorClient,
        *,
        slot: str = "",
        task_types: Sequence[int] = (TaskType.CHUNK,),
        prover_height: Callable[[], int],
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        refused_interval: float = DEFAULT_REFUSED_INTERVAL,
        failure_backoff: float = DEFAULT_FAILURE_BACKOFF,
        failure_backoff_max: float = DEFAULT_FAILURE_BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.generation = client.generation.value
        self.slot = slot
        self.task_types = tuple(task_types)
        self._height = prover_height
        self.poll_interval = poll_interval
        self.refused_interval = refused_interval
        self.failure_backoff = failure_backoff
        self.failure_backoff_max = failure_backoff_max
        self._clock = clock
        self._failures = 0  # consecutive failure reports taken by the coordinator
        self._hold_until = 0.0  # no get_task before this (clock) time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False

    def open(self, on_task: Callable[[TaskMsg], None], idle: Callable[[], bool]) -> None:
        self.close()
        self._stop.clear()
        self.client.login()
        self._connected = True
        self._thread = threading.Thread(target=self._poll_loop, args=(on_task, idle),
                                        daemon=True, name=f"coordinator-poll-{self.slot}")
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def token_expires(self) -> float | None:
        return self.client.token_expires

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._connected = False

    def submit(self, task: TaskMsg, detail: ProofDetail, account: LocalAccount) -> None:
        # `account` signs nothing in the HTTP era: identity is the login JWT (spec 6.1).
        request = submit_request(detail, task)  # WireFormatError: not an HTTP task
        try:
            self.client.submit_proof(request)
        except CoordinatorError as exc:
            log.warning("submit refused slot=%s task_id=%s permanent=%s error=%s",
                        self.slot, detail.id, exc.permanent, exc)
            raise
        log.info("proof submitted slot=%s task_id=%s status=%d", self.slot, detail.id,
                 detail.status)
        if detail.status == RespStatus.OK:
            self._failures, self._hold_until = 0, 0.0
            return
        self._failures += 1
        hold = min(self.failure_backoff * 2 ** (self._failures - 1), self.failure_backoff_max)
        self._hold_until = self._clock() + hold
        log.info("failure reported: next task not before %.1f s slot=%s task_id=%s "
                 "consecutive=%d", hold, self.slot, detail.id, self._failures)

    def _poll_loop(self, on_task: Callable[[TaskMsg], None], idle: Callable[[], bool]) -> None:
        while not self._stop.is_set():
            wait = self.poll_interval
            held = self._hold_until - self._clock()
            if held > 0:
                self._stop.wait(held)  # a poke does not shorten a failure backoff
                continue
            if idle():
                try:
                    wait = self._poll_once(on_task)
                except (ConnectionLost, WrongGeneration) as exc:
                    # Down until the listener reopens; a re-login that now lands on another
                    # identity surfaces from open() as WrongGeneration.
                    log.warning("coordinator session down slot=%s error=%s", self.slot, exc)
                    self._connected = False
                    return
                except CoordinatorError as exc:
                    log.warning("get_task refused slot=%s permanent=%s error=%s",
                                self.slot, exc.permanent, exc)
                    wait = self.refused_interval
                except TraceFetchError as exc:
                    log.warning("get_task skipped: no L2 head slot=%s error=%s", self.slot, exc)
                except RollerError as exc:  # a malformed answer
                    log.error("get_task failed slot=%s error=%s", self.slot, exc)
                    wait = self.refused_interval
            self._wake.wait(wait)
            self._wake.clear()

    def _poll_once(self, on_task: Callable[[TaskMsg], None]) -> float:
        answer = self.client.get_task(self.task_types, self._height())
        if answer is None:
            return self.poll_interval
        # Kept even when its data does not decode: the task is assigned to this key, and only
        # an answer (a deterministic failure report, roller.lifecycle.failures) frees the key before
        # the coordinator's timeout.
        task = to_task_msg(answer, keep_undecodable=True)
        log.info("task received slot=%s task_id=%s coordinator_task_id=%s type=%s", self.slot,
                 task.id, answer.task_id, answer.task_type)
        on_task(task)
        return self.poll_interval  # the slot is busy now; the submit pokes us awake
