"""End to end with real processes: redis-server, the devnet (coordinator + L2 node) as its own
process, `python -m roller.listener`, one `celery -A roller worker -Q gpuN` per slot and the
real native prover; the devnet verifies every proof with the native verifier."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import celeryconfig
from roller.broker import waiting_messages
from roller.config import load_config
from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.ffi.native import RollerProver, batch_info_of_instance
from roller.ledger import AssignResult, TaskLedger, job_id
from roller.listener import Dispatcher
from roller.localrun import LocalCluster, demo_slots, wait_for
from roller.protocol.messages import AggProof, ProveType, TaskMsg

pytestmark = pytest.mark.e2e


def verified(tasks: list[dict[str, Any]]) -> bool:
    return bool(tasks) and all(t["state"] == "verified" for t in tasks)


def submissions(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Submissions the coordinator processed (not refused by its checks)."""
    return [s for s in task["submissions"] if not s.get("rejection")]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, params_dir: Path
             ) -> Iterator[tuple[LocalCluster, list[dict[str, Any]]]]:
    """Every shipped mainnet block as chunk tasks, then one batch task over their proofs."""
    workdir = tmp_path_factory.mktemp("e2e")
    cluster = LocalCluster(workdir, slots=demo_slots(workdir), params_dir=params_dir,
                           devnet_args=["--chunk-size", "8", "--batch", "--verifier", "native",
                                        "--dispatch-interval", "0.3"])
    try:
        cluster.start()
        cluster.wait_tasks(lambda ts: any(t["type"] == 1 for t in ts) and verified(ts), 900)
        yield cluster, cluster.tasks()
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


def test_every_block_and_one_batch_verified_once(full_run: tuple[LocalCluster, list]) -> None:
    cluster, tasks = full_run
    chunks = [t for t in tasks if t["type"] == 0]
    batches = [t for t in tasks if t["type"] == 1]
    assert sum(len(t["block_numbers"]) for t in chunks) == 49
    assert len(batches) == 1 and batches[0]["sub_proof_count"] == len(chunks)
    for t in tasks:
        subs = submissions(t)
        assert len(subs) == 1, f"task {t['id']} submitted {len(subs)} times"
        assert subs[0]["status"] == 0 and subs[0]["valid"] is True
        assert t["dispatch_count"] == 1


def test_jobs_ran_once_each_on_their_slot_queue(full_run: tuple[LocalCluster, list]) -> None:
    cluster, tasks = full_run
    ledger = TaskLedger.from_url(cluster.redis.url)
    queues = {s["name"]: s["queue"] for s in cluster.slots}
    seen = 0
    for slot, queue in queues.items():
        for task_id in ledger.task_ids(slot):
            rec = ledger.get(slot, task_id)
            assert rec is not None
            assert rec.queue == queue, f"{task_id} of {slot} ran on {rec.queue}"
            assert rec.attempts == 1 and rec.outcome == "accepted"
            seen += 1
    assert seen == len(tasks)
    assert ledger.outbox_size(*queues) == 0
    # the batch slot proved the batch and nothing else
    batch_slot = next(s["name"] for s in cluster.slots if s["prove_type"] == 1)
    assert [ledger.get(batch_slot, i).task.type for i in ledger.task_ids(batch_slot)] == [1]


@pytest.fixture
def small_cluster(tmp_path: Path, params_dir: Path) -> Iterator[LocalCluster]:
    """One chunk slot; tasks only when the test pushes them."""
    slots = demo_slots(tmp_path, chunk_slots=1, batch_slots=0)
    cluster = LocalCluster(tmp_path, slots=slots, params_dir=params_dir,
                           devnet_args=["--no-chunk-tasks", "--verifier", "native",
                                        "--dispatch-interval", "0.2"],
                           config_extra={"retry": {"submit_backoff_seconds": 0.5,
                                                   "submit_backoff_max_seconds": 2,
                                                   "reconnect_backoff_seconds": 0.2,
                                                   "reconnect_backoff_max_seconds": 2}})
    try:
        yield cluster.start()
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


def chain_hashes(cluster: LocalCluster, start: int, count: int) -> list[str]:
    """Block hashes of `count` shipped mainnet blocks from block number `start`."""
    files = [DEFAULT_TRACE_DIR / f"block_{n}.json.gz" for n in range(start, start + count)]
    return [json.loads(read_trace_file(f))["header"]["hash"] for f in files]


def push(cluster: LocalCluster, hashes: list[str]) -> str:
    return str(cluster.devnet.control("push_task", {"type": 0, "block_hashes": hashes})["id"])


def task_of(cluster: LocalCluster, task_id: str) -> dict[str, Any]:
    return next(t for t in cluster.tasks() if t["id"] == task_id)


def slot_record(cluster: LocalCluster, task_id: str) -> Any:
    ledger = TaskLedger.from_url(cluster.redis.url)
    return ledger.get(cluster.slots[0]["name"], task_id)


def test_listener_restart_mid_proof_still_delivers(small_cluster: LocalCluster) -> None:
    """The listener stops while the worker proves: the worker never submits, so the proof
    waits in the outbox, and the restarted listener re-registers and delivers it without
    proving again."""
    cluster = small_cluster
    task_id = push(cluster, chain_hashes(cluster, 2640, 4))
    wait_for(lambda: (rec := slot_record(cluster, task_id)) is not None
             and rec.state == "proving", 120, "the proof to start")
    assert cluster.listener is not None
    assert cluster.listener.stop(signal.SIGTERM) == 0
    wait_for(lambda: slot_record(cluster, task_id).state == "proved", 300, "the proof")
    # Only the listener delivers, and it is down: the ledger holds the proof in the outbox.
    ledger = TaskLedger.from_url(cluster.redis.url)
    assert ledger.outbox_size(cluster.slots[0]["name"]) == 1
    assert task_of(cluster, task_id)["state"] == "assigned"
    cluster.start_listener()
    wait_for(lambda: task_of(cluster, task_id)["state"] == "verified", 120, "delivery")
    rec = slot_record(cluster, task_id)
    assert rec.attempts == 1 and rec.outcome == "accepted"
    task = task_of(cluster, task_id)
    assert [(s.get("rejection") or "") for s in task["submissions"]] == [""]


def test_coordinator_outage_holds_proof_in_outbox(small_cluster: LocalCluster) -> None:
    cluster = small_cluster
    task_id = push(cluster, chain_hashes(cluster, 2650, 3))
    wait_for(lambda: (rec := slot_record(cluster, task_id)) is not None
             and rec.state == "proving", 120, "the proof to start")
    cluster.devnet.control("stop_for", {"seconds": 20})
    wait_for(lambda: slot_record(cluster, task_id).state == "proved", 300, "the proof")
    assert TaskLedger.from_url(cluster.redis.url).outbox_size(cluster.slots[0]["name"]) == 1
    wait_for(lambda: task_of(cluster, task_id)["state"] == "verified", 180, "delivery")
    rec = slot_record(cluster, task_id)
    assert rec.attempts == 1 and rec.outcome == "accepted"
    assert len(submissions(task_of(cluster, task_id))) == 1


def test_duplicate_notification_proves_once(small_cluster: LocalCluster) -> None:
    """The same task notified twice (a reconnect race) is enqueued and proved once."""
    cluster = small_cluster
    cfg = load_config(cluster.config)
    slot = cfg.slots[0]
    # A Celery client of its own: the global app stays as other tests expect it.
    client = Celery("roller-test")
    client.config_from_object("celeryconfig")
    client.conf.update(celeryconfig.broker_settings(cfg))
    ledger = TaskLedger.from_url(cfg.broker_url)
    dispatcher = Dispatcher(client, ledger, lambda _slot: None)
    task = TaskMsg(id="0x" + "ab" * 32, type=0,
                   block_hashes=tuple(chain_hashes(cluster, 2660, 2)), sub_proofs=())
    try:
        assert dispatcher.accept(slot, task, epoch=1000) is AssignResult.NEW
        assert dispatcher.accept(slot, task, epoch=1000) is AssignResult.IN_FLIGHT
    finally:
        client.close()
    wait_for(lambda: slot_record(cluster, task.id).state == "proved", 300, "the proof")
    # Once the job id has left the broker (neither waiting nor unacked), no second job for
    # the task exists that could still run.
    wait_for(lambda: job_id(slot.name, task.id) not in waiting_messages(ledger.r, slot.queue),
             60, "the job to be acknowledged")
    rec = slot_record(cluster, task.id)
    assert rec.attempts == 1
    # The devnet never assigned this task to the key: the proof waits in the outbox.
    assert rec.state == "proved" and rec.proof is not None and rec.proof.status == 0


FAULT_LIB = (Path(__file__).resolve().parents[1]
             / "native/target/features-fault-injection/release/libroller_prover.so")


@pytest.mark.skipif(not FAULT_LIB.exists(), reason="no fault-injection library (make faultlib)")
def test_valid_proof_of_other_blocks_is_refused_naming_the_field(tmp_path: Path,
                                                                  params_dir: Path) -> None:
    """A prover that returns a valid proof of other blocks (all of the task's but the last:
    ROLLER_PROVER_FAULT=other-blocks): the worker's own check against the chunk info of the
    task's traces refuses it before the store, naming the field, so the coordinator never
    receives it: its one submission is the transient report. (The devnet's verifier refusing
    such a proof itself: tests/test_self_check.py.) The honest runs above verify."""
    slots = demo_slots(tmp_path, chunk_slots=1, batch_slots=0)
    cluster = LocalCluster(tmp_path, slots=slots, params_dir=params_dir,
                           devnet_args=["--no-chunk-tasks", "--verifier", "native",
                                        "--dispatch-interval", "0.2"],
                           env={"ROLLER_PROVER_LIB": str(FAULT_LIB),
                                "ROLLER_PROVER_FAULT": "other-blocks"})
    try:
        cluster.start()
        task_id = push(cluster, chain_hashes(cluster, 2670, 3))
        wait_for(lambda: bool(submissions(task_of(cluster, task_id))), 300, "the submission")
        [sub] = submissions(task_of(cluster, task_id))
        # A proof of blocks 2670-2671 for the task 2670-2672: the post state root differs.
        assert sub["status"] != 0, sub
        assert sub["error"].startswith("[transient] proof failed its own check: instance "
                                       "field post_state_root differs from the task"), sub
        assert task_of(cluster, task_id)["state"] != "verified"
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


def test_batch_slot_worker_proves_a_bundle_job(tmp_path: Path, params_dir: Path,
                                               prover: RollerProver) -> None:
    """A worker process of a batch slot takes a type-2 (bundle) job from its queue and proves
    it natively from the task's batch proofs; the proof verifies against the task's batch
    infos. (No listener process: the test enqueues the job through the dispatcher.)"""
    def traces(first: int, count: int) -> str:
        files = [DEFAULT_TRACE_DIR / f"block_{n}.json.gz" for n in range(first, first + count)]
        return "[" + ",".join(read_trace_file(f).decode() for f in files) + "]"

    chunks = [json.loads(prover.gen_chunk_proof(traces(2640, 2))),
              json.loads(prover.gen_chunk_proof(traces(2642, 3)))]
    batch = AggProof.from_json(json.loads(prover.gen_batch_proof(json.dumps(chunks))))
    cluster = LocalCluster(tmp_path, slots=demo_slots(tmp_path, chunk_slots=0, batch_slots=1),
                           params_dir=params_dir,
                           devnet_args=["--no-chunk-tasks", "--verifier", "stand-in"])
    try:
        cluster.start(start_roller=False)
        cfg = load_config(cluster.config)
        slot = cfg.slots[0]
        cluster.start_worker(slot.queue)
        # A Celery client of its own: the global app stays as other tests expect it.
        client = Celery("roller-test")
        client.config_from_object("celeryconfig")
        client.conf.update(celeryconfig.broker_settings(cfg))
        ledger = TaskLedger.from_url(cfg.broker_url)
        task = TaskMsg(id="cd" * 32, type=ProveType.BUNDLE, block_hashes=(),
                       sub_proofs=(batch,))
        # The listener's dispatcher takes a bundle for a batch slot (spec 5.1).
        assert Dispatcher(client, ledger, lambda _slot: None).accept(
            slot, task, epoch=1) is AssignResult.NEW
        worker = cluster.workers[slot.queue]

        def proved() -> bool:
            assert worker.alive(), "the worker exited"
            return bool(slot_record(cluster, task.id).state == "proved")

        wait_for(proved, 300, "the bundle")
        rec = slot_record(cluster, task.id)
        assert rec.attempts == 1 and rec.proof is not None and rec.proof.status == 0
        proof = rec.proof.proof
        assert proof is not None and proof.block_count == 5
        infos = json.dumps([batch_info_of_instance(batch.instance, batch.block_count)])
        assert prover.bundle_proof_rejection(json.dumps(proof.to_json()), infos) is None
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
