"""A bundle on the H3 devnet coordinator with the native prover and verifier: two chunk tasks,
their batch, then the bundle the coordinator creates for the verified batch (spec 5.4), each
proved from what get_task served (the TaskMsg the listener records) and verified
natively against its task. Uses the circuits of the session params dir (chunk, batch of 2,
bundle of one batch of 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import BUNDLE, VERIFIED, TaskBook, TaskRecord
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
from roller.devnet.verifier import NativeVerifier
from roller.ffi import default_library_path
from roller.ffi.native import RollerProver
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.http_messages import (
    GetTaskResponse,
    SubmitProofRequest,
    agg_proof_to_json,
    to_task_msg,
)
from roller.protocol.messages import AggProof

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    not Path(default_library_path()).exists(), reason="native prover library not built"
)]

VERSION = "v4.4.45-000000-000000-000000"


def _prove(prover: RollerProver, index_raw: dict[str, bytes], task: GetTaskResponse) -> str:
    """What a worker proves for a served task (roller AggProof JSON)."""
    if task.task_type == TaskType.CHUNK:
        raws = [index_raw[h].decode() for h in task.block_hashes()]
        return prover.gen_chunk_proof("[" + ",".join(raws) + "]")
    payload = json.dumps([p.to_json() for p in to_task_msg(task).sub_proofs])
    if task.task_type == TaskType.BUNDLE:
        return prover.gen_bundle_proof(payload)
    return prover.gen_batch_proof(payload)


def test_h3_bundle_is_proved_and_verified_natively(prover: RollerProver,
                                                   params_dir: Path) -> None:
    index = load_trace_dir(DEFAULT_TRACE_DIR)
    book = TaskBook(batch=True)
    for i, (first, n) in enumerate(((2640, 2), (2642, 3))):
        numbers = tuple(range(first, first + n))
        book.add(TaskRecord(id="0x" + f"{i + 1:02x}" * 32, type=0,
                            block_hashes=tuple(index.by_number[b].hash for b in numbers),
                            source="chunk", chain=0, block_numbers=numbers))
    verifier = NativeVerifier(params_dir, index)
    # Its tasks are homestead's (the TaskRecord default): so are the keys its logins take.
    coord = HttpCoordinator(book, verifier, HttpCoordinatorConfig(generation=Generation.H3,
                                                                  forks=("homestead",)))
    coord.start()
    try:
        assert coord._server is not None
        url = f"http://127.0.0.1:{coord._server.server_address[1]}"
        client = HttpCoordinatorClient(url, Generation.H3, Account.create(),
                                       prover_name="roller-test", prover_version=VERSION,
                                       prover_types=(1, 2),
                                       vks=tuple(verifier.vks(("homestead",))))
        raw = {h: e.raw for h, e in index.by_hash.items()}
        proved: dict[int, str] = {}
        for task_type in (TaskType.CHUNK, TaskType.CHUNK, TaskType.BATCH, TaskType.BUNDLE):
            task = client.get_task((task_type,), 10**6)
            assert task is not None and task.task_type == task_type
            proved[task_type] = _prove(prover, raw, task)
            wire = agg_proof_to_json(AggProof.from_json(json.loads(proved[task_type])))
            client.submit_proof(SubmitProofRequest.success(task, wire))
        assert all(t.state == VERIFIED for t in book.tasks.values())
        [bundle] = [t for t in book.tasks.values() if t.type == BUNDLE]
        assert bundle.proof is not None and bundle.proof.block_count == 5
        # The native verifier refuses the batch proof as an answer to the bundle task.
        batch = AggProof.from_json(json.loads(proved[TaskType.BATCH]))
        verdict = verifier.verify(bundle, batch)
        assert not verdict.valid and "kind 1, expected 2" in verdict.reason
    finally:
        coord.stop()
