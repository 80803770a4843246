"""Answers in each HTTP generation's own proof shape, through a devnet that round-trips every
submitted proof through that generation's Go struct as a real coordinator does (issue 22).

Per generation (h1..h4): two chunk tasks, their batch (and from h3 the batch's bundle), each
proved by the native prover from what get_task served, as the roller does it: the served task
becomes the listener's TaskMsg (sub-proofs decoded by the generation's codec), the answer
becomes the submit body through the session's own `submit_request`. Every proof is verified
natively by the devnet against its task. Then the old answer shape (the 2023 AggProof under
HTTP names) is shown to fail there: the coordinator's struct drops final_pair and block_count,
so the batch built from those chunk proofs cannot be proved (the field error of issue 22).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import BUNDLE, VERIFIED, TaskBook, TaskRecord
from roller.devnet.traces import DEFAULT_TRACE_DIR, TraceIndex, load_trace_dir
from roller.devnet.verifier import NativeVerifier
from roller.errors import ProverError
from roller.ffi import default_library_path
from roller.ffi.native import RollerProver
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.http_errors import ProofUnparsable
from roller.protocol.http_messages import (
    GetTaskResponse,
    SubmitProofRequest,
    agg_proof_from_value,
    agg_proof_to_json,
    to_task_msg,
)
from roller.protocol.messages import AggProof, ProofDetail, RespStatus
from roller.protocol.session import submit_request

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    not Path(default_library_path()).exists(), reason="native prover library not built"
)]

VERSION = "v4.4.45-000000-000000-000000"


@pytest.fixture(scope="module")
def index() -> TraceIndex:
    return load_trace_dir(DEFAULT_TRACE_DIR)


def _devnet(gen: Generation, index: TraceIndex, params_dir: Path
            ) -> tuple[HttpCoordinator, TaskBook, HttpCoordinatorClient]:
    book = TaskBook(batch=True)
    for i, (first, n) in enumerate(((2640, 2), (2642, 3))):
        numbers = tuple(range(first, first + n))
        book.add(TaskRecord(id="0x" + f"{i + 1:02x}" * 32, type=0,
                            block_hashes=tuple(index.by_number[b].hash for b in numbers),
                            source="chunk", chain=0, block_numbers=numbers))
    verifier = NativeVerifier(params_dir, index)
    # Its tasks are homestead's (the TaskRecord default): so are the keys its logins take.
    coord = HttpCoordinator(book, verifier,
                            HttpCoordinatorConfig(generation=gen, forks=("homestead",)))
    coord.start()
    assert coord._server is not None
    url = f"http://127.0.0.1:{coord._server.server_address[1]}"
    h3 = gen.rank >= 3
    client = HttpCoordinatorClient(url, gen, Account.create(), prover_name="roller-test",
                                   prover_version=VERSION,
                                   prover_types=(1, 2) if h3 else (),
                                   vks=tuple(verifier.vks(("homestead",))) if h3 else (),
                                   )
    return coord, book, client


@pytest.fixture
def devnet(request: pytest.FixtureRequest, index: TraceIndex, params_dir: Path
           ) -> Iterator[tuple[Generation, HttpCoordinator, TaskBook, HttpCoordinatorClient]]:
    gen = Generation(request.param)
    coord, book, client = _devnet(gen, index, params_dir)
    try:
        yield gen, coord, book, client
    finally:
        coord.stop()


def _prove(prover: RollerProver, index: TraceIndex, task: GetTaskResponse) -> AggProof:
    """What the worker proves for a served task: its TaskMsg's block hashes or sub-proofs."""
    msg = to_task_msg(task)
    if task.task_type == TaskType.CHUNK:
        raws = [index.by_hash[h].raw.decode() for h in msg.block_hashes]
        text = prover.gen_chunk_proof("[" + ",".join(raws) + "]")
    else:
        payload = json.dumps([p.to_json() for p in msg.sub_proofs])
        prove = prover.gen_bundle_proof if task.task_type == TaskType.BUNDLE \
            else prover.gen_batch_proof
        text = prove(payload)
    return AggProof.from_json(json.loads(text))


@pytest.mark.parametrize("devnet", [g.value for g in Generation], indirect=True)
def test_chunk_batch_bundle_prove_and_verify_in_the_generations_shape(
        devnet: tuple[Generation, HttpCoordinator, TaskBook, HttpCoordinatorClient],
        prover: RollerProver, index: TraceIndex) -> None:
    gen, coord, book, client = devnet
    chain = [TaskType.CHUNK, TaskType.CHUNK, TaskType.BATCH]
    if gen.rank >= 3:
        chain.append(TaskType.BUNDLE)
    made: dict[int, list[AggProof]] = {}
    for task_type in chain:
        task = client.get_task((task_type,), 10**6)
        assert task is not None and task.task_type == task_type
        msg = to_task_msg(task)
        if task_type != TaskType.CHUNK:
            # What came back inside the task is what the prover made, all five fields: the
            # struct dropped final_pair and block_count and the codec re-derived them.
            assert list(msg.sub_proofs) == made[task_type - 1]
        proof = _prove(prover, index, task)
        made.setdefault(task_type, []).append(proof)
        detail = ProofDetail(id=msg.id, type=msg.type, status=RespStatus.OK, proof=proof,
                             error="")
        client.submit_proof(submit_request(detail, msg))
    assert all(t.state == VERIFIED for t in book.tasks.values()), book.ledger()
    if gen.rank >= 3:
        [bundle] = [t for t in book.tasks.values() if t.type == BUNDLE]
        assert bundle.proof is not None and bundle.proof.block_count == 5
    # The stored chunk proof is the generation's struct, nothing more.
    stored = list(coord.state.stored.values())[0]
    if gen == Generation.H4:
        assert set(stored) == {"metadata", "proof"}
        assert set(stored["proof"]) == {"proofs", "public_values", "vk"}
    else:
        assert "final_pair" not in stored and "block_count" not in stored
        assert ("storage_trace" in stored) == (gen == Generation.H1)  # v4.1.1: null (R)


@pytest.mark.parametrize("devnet", ["http-h1", "http-h3", "http-h4"], indirect=True)
def test_the_2023_answer_shape_cannot_prove_a_batch(
        devnet: tuple[Generation, HttpCoordinator, TaskBook, HttpCoordinatorClient],
        prover: RollerProver, index: TraceIndex) -> None:
    """Issue 22 as seen on v4.1.1 / v4.4.x: chunk proofs answered as the 2023 AggProof (and
    read back as such) leave the batch unprovable."""
    gen, coord, book, client = devnet
    for _ in range(2):
        task = client.get_task((TaskType.CHUNK,), 10**6)
        assert task is not None
        proof = _prove(prover, index, task)
        old_answer = SubmitProofRequest.success(task, agg_proof_to_json(proof))
        if gen == Generation.H4:
            # H4's ChunkProof.proof is an object: the old shape does not even decode.
            with pytest.raises(ProofUnparsable, match="cannot unmarshal string into Go struct "
                               "field message.ChunkProof.proof of type \\*message.VmProof"):
                client.submit_proof(old_answer)
            return
        client.submit_proof(old_answer)
    batch = client.get_task((TaskType.BATCH,), 10**6)
    assert batch is not None
    served = json.loads(batch.task_data)["chunk_proofs"]
    assert all("final_pair" not in p and "block_count" not in p for p in served)
    old_reading = [agg_proof_from_value(p).to_json() for p in served]
    with pytest.raises(ProverError, match="final_pair missing|missing|invalid"):
        prover.gen_batch_proof(json.dumps(old_reading))
