"""The ledger's lifecycle rules on an HTTP generation, between the listener's pieces (the
Submitter, the HTTP session, the Redis ledger) and the devnet's HTTP coordinator in process,
on a clock the test steps: a proof that arrives after the coordinator timed the assignment
out ends refused ("cannot submit proof twice"), and frees the slot for its next task; a
delivered proof pokes the session so it asks at once; an H4 re-delivery of the assignment
in flight is a duplicate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from test_http_client_devnet import GOOD, Clock, client_for, make_coordinator

from roller.config import RetryConfig
from roller.ledger import AssignResult, TaskLedger, TaskState
from roller.listener.submitter import SubmitResult, Submitter
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import Generation
from roller.protocol.http_messages import to_task_msg
from roller.protocol.messages import ProofDetail, TaskMsg
from roller.protocol.session import HttpCoordinatorSession

SLOT = "chunk-gpu0"


@pytest.fixture
def ledger(redis_url: str) -> TaskLedger:
    return TaskLedger.from_url(redis_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Pokes:
    def __init__(self, session: HttpCoordinatorSession) -> None:
        self.count = 0
        self._poke = session.poke
        session.poke = self  # type: ignore[method-assign]

    def __call__(self) -> None:
        self.count += 1
        self._poke()


def proved(ledger: TaskLedger, task: TaskMsg) -> None:
    """A task recorded, proved by a worker, its answer in the outbox."""
    assert ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    assert ledger.acquire_lease(SLOT, task.id, "w:1", 30)
    assert ledger.mark_queued(SLOT, task.id).ok
    assert ledger.start_attempt(SLOT, task.id, "w:1", "w", "gpu0").started
    detail = ProofDetail(id=task.id, type=task.type, status=0, proof=GOOD, error="")
    assert ledger.store_proof(SLOT, detail, 1.0, owner="w:1").ok


def proved_task(coordinator: Any, clock: Clock, ledger: TaskLedger
                ) -> tuple[LocalAccount, HttpCoordinatorClient, TaskMsg]:
    """A key's chunk task from the coordinator, proved, its answer in our outbox."""
    account = Account.create()
    client = client_for(coordinator, account, clock=clock)
    answer = client.get_task((1,), 10**6)
    assert answer is not None
    task = to_task_msg(answer)
    proved(ledger, task)
    return account, client, task


@pytest.fixture
def h3(clock: Clock) -> Iterator[Any]:
    c = make_coordinator(Generation.H3, clock, collection_time=60)
    c.start()
    yield c
    c.stop()


def test_late_proof_is_refused_for_good_and_the_slot_asks_again(
        h3: Any, clock: Clock, ledger: TaskLedger) -> None:
    account, client, task = proved_task(h3, clock, ledger)
    clock.now += 61  # the coordinator's timeout cron marks the assignment invalid
    session = HttpCoordinatorSession(client, slot=SLOT, prover_height=lambda: 10**6)
    pokes = Pokes(session)
    submitter = Submitter(ledger, RetryConfig(), 3600)
    session._connected = True  # logged in above; no poll thread needed here
    assert submitter.submit(SLOT, task.id, account, session) is SubmitResult.REFUSED
    rec = ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.REFUSED
    assert "cannot submit proof twice" in rec.outcome
    assert ledger.outbox_size(SLOT) == 0 and not ledger.live_rows(SLOT)
    assert submitter.drain(SLOT, account, session) == 0 and pokes.count == 0


def test_delivery_pokes_the_session(h3: Any, clock: Clock, ledger: TaskLedger) -> None:
    account, client, task = proved_task(h3, clock, ledger)
    session = HttpCoordinatorSession(client, slot=SLOT, prover_height=lambda: 10**6)
    session._connected = True
    pokes = Pokes(session)
    assert Submitter(ledger, RetryConfig(), 3600).drain(SLOT, account, session) == 1
    assert pokes.count == 1
    rec = ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.DELIVERED


def test_h4_redelivery_in_flight_is_a_duplicate(clock: Clock, ledger: TaskLedger) -> None:
    c = make_coordinator(Generation.H4, clock)
    c.start()
    try:
        account = Account.create()
        client = client_for(c, account, clock=clock)
        got: list[TaskMsg] = []
        arrived = threading.Event()
        session = HttpCoordinatorSession(client, slot=SLOT, prover_height=lambda: 10**6,
                                         poll_interval=0.05)

        def on_task(task: TaskMsg) -> None:
            got.append(task)
            arrived.set()

        # A listener whose ledger lost the task asks again while the coordinator holds it.
        session.open(on_task, idle=lambda: len(got) < 2)
        try:
            for _ in range(2):
                assert arrived.wait(5)
                arrived.clear()
        finally:
            session.close()
        assert got[0] == got[1]
        assert ledger.assign(SLOT, got[0], epoch=1).result is AssignResult.NEW
        assert ledger.mark_queued(SLOT, got[0].id).ok
        assert ledger.assign(SLOT, got[1], epoch=1).result is AssignResult.IN_FLIGHT
    finally:
        c.stop()
