"""The native prover through cffi: real chunk proofs over real traces, tampering, batches, errors.

Needs the built library (`python -m roller.ffi.build` or cargo build --release in native/).
Circuits are built once per session in a temporary params dir (or ROLLER_TEST_PARAMS).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from roller.errors import ProverError
from roller.ffi import default_library_path, load_prover
from roller.ffi.abi import ABI_VERSION_NAME, roller_declarations
from roller.ffi.native import RollerProver, batch_info_of_instance, roller_ffi

DATA = Path(__file__).resolve().parents[1] / "roller" / "devnet" / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    not Path(default_library_path()).exists(), reason="native prover library not built"
)]

HOMESTEAD = b"homestead"  # the fork every ABI call names (ABI 4)


def mainnet(first: int, count: int) -> list[dict[str, Any]]:
    """Blocks of the shipped chain-534352 copy (gzip)."""
    out = []
    for n in range(first, first + count):
        with gzip.open(DATA / "chain-534352" / f"block_{n}.json.gz", "rt") as f:
            out.append(json.load(f))
    return out


def devnet(first: int, count: int) -> list[dict[str, Any]]:
    """Blocks of chain-222222 from the shared test data (not shipped)."""
    out = []
    for n in range(first, first + count):
        folder = "chunk_10" if n <= 615 else "chunk_11"
        out.append(json.loads((SHARED / "chain-222222" / folder / f"block_{n}.json").read_text()))
    return out


@pytest.fixture(scope="session")
def mainnet_proof(prover: RollerProver) -> str:
    return prover.gen_chunk_proof(json.dumps(mainnet(2640, 4)))


def flip(proof_json: str, field: str, index: int) -> str:
    p = json.loads(proof_json)
    raw = bytearray(base64.b64decode(p[field]))
    raw[index % len(raw)] ^= 0x10
    p[field] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(p)


def decode_instance(proof_json: str) -> dict[str, Any]:
    """The chunk instance layout of native/include/roller_prover.h."""
    inst = base64.b64decode(json.loads(proof_json)["instance"])
    assert len(inst) == 216
    return {
        "chain_id": int.from_bytes(inst[0:8], "big"),
        "prev": "0x" + inst[8:40].hex(),
        "post": "0x" + inst[40:72].hex(),
        "withdraw": "0x" + inst[72:104].hex(),
        "data_hash": "0x" + inst[104:136].hex(),
        "pi_hash": "0x" + inst[136:168].hex(),
        "block_count": int.from_bytes(inst[208:216], "big"),
    }


def info(prover: RollerProver, blocks: list[dict[str, Any]]) -> str:
    """The chunk info a task over these blocks determines."""
    return json.dumps(prover.chunk_info(json.dumps(blocks)))


def test_the_library_exports_every_function_of_the_header(prover: RollerProver) -> None:
    """The cffi declarations are the header's (tests/test_ffi_abi.py): the built library has
    each of them, and reports the header's ABI version."""
    functions = [name.split()[1] for name in roller_ffi()._parser._declarations
                 if name.startswith("function ")]
    assert len(functions) == 18  # ABI 4 added prover_forks and get_vk
    for name in functions:
        assert getattr(prover._lib, name) is not None
    version = roller_declarations().constant(ABI_VERSION_NAME)
    assert prover._lib.prover_abi_version() == version == prover._lib.ROLLER_PROVER_ABI_VERSION


def test_mainnet_chunk_proof_verifies(prover: RollerProver, mainnet_proof: str) -> None:
    blocks = mainnet(2640, 4)
    p = json.loads(mainnet_proof)
    assert p["block_count"] == 4
    for field in ("proof", "final_pair"):
        raw = base64.b64decode(p[field], validate=True)
        assert raw and len(raw) % 32 == 0
    inst = decode_instance(mainnet_proof)
    assert inst["chain_id"] == 534352
    assert inst["prev"] == blocks[0]["storageTrace"]["rootBefore"]
    assert inst["post"] == blocks[-1]["header"]["stateRoot"]
    assert inst["withdraw"] == blocks[-1]["withdraw_trie_root"]
    assert inst["block_count"] == 4
    assert prover.verify_chunk_proof(mainnet_proof, info(prover, blocks))


def test_valid_proof_of_other_blocks_is_refused_naming_the_field(
    prover: RollerProver, mainnet_proof: str
) -> None:
    reason = prover.chunk_proof_rejection(mainnet_proof, info(prover, mainnet(2641, 4)))
    assert reason is not None and "prev_state_root" in reason
    reason = prover.chunk_proof_rejection(mainnet_proof, info(prover, mainnet(2640, 3)))
    assert reason is not None and "post_state_root" in reason


@pytest.mark.parametrize(
    ("field", "index"),
    [("proof", 5), ("proof", 700), ("proof", 90_000), ("instance", 9), ("instance", 120),
     ("instance", 150), ("final_pair", 1), ("vk", 3)],
)
def test_tampered_chunk_proof_fails(
    prover: RollerProver, mainnet_proof: str, field: str, index: int
) -> None:
    assert not prover.verify_chunk_proof(flip(mainnet_proof, field, index),
                                         info(prover, mainnet(2640, 4)))


def test_bad_inputs_raise(prover: RollerProver) -> None:
    blocks = mainnet(2640, 2)
    with pytest.raises(ProverError, match="out of order"):
        prover.gen_chunk_proof(json.dumps(blocks[::-1]))
    with pytest.raises(ProverError, match="empty"):
        prover.gen_chunk_proof("[]")
    with pytest.raises(ProverError, match="JSON"):
        prover.gen_chunk_proof("[{")
    with pytest.raises(ProverError):
        prover.gen_batch_proof("[]")
    with pytest.raises(ProverError, match="chain_id"):
        prover.chunk_info(json.dumps(blocks), chain_id=222222)
    assert not prover.verify_chunk_proof("not json", info(prover, blocks))
    assert not prover.verify_chunk_proof("{}", "not json")
    assert not prover.verify_batch_proof("{}", "[]")


@pytest.mark.skipif(not (SHARED / "chain-222222").exists(), reason="shared test data missing")
def test_devnet_batch_of_contiguous_chunks(prover: RollerProver) -> None:
    a = prover.gen_chunk_proof(json.dumps(devnet(527, 3)))
    b = prover.gen_chunk_proof(json.dumps(devnet(530, 2)))
    c = prover.gen_chunk_proof(json.dumps(devnet(533, 1)))
    assert decode_instance(a)["chain_id"] == 222222
    batch = prover.gen_batch_proof(json.dumps([json.loads(a), json.loads(b)]))
    parsed = json.loads(batch)
    assert parsed["block_count"] == 5
    inst = base64.b64decode(parsed["instance"])
    assert inst[8:40] == base64.b64decode(json.loads(a)["instance"])[8:40]
    assert inst[40:72] == base64.b64decode(json.loads(b)["instance"])[40:72]
    task = json.dumps([prover.chunk_info(json.dumps(devnet(527, 3))),
                       prover.chunk_info(json.dumps(devnet(530, 2)))])
    assert prover.verify_batch_proof(batch, task)
    assert not prover.verify_batch_proof(flip(batch, "proof", 1234), task)
    assert not prover.verify_batch_proof(flip(batch, "instance", 60), task)
    # Sub-proofs out of chain order (no ORDER BY upstream): proved in chain order.
    swapped = prover.gen_batch_proof(json.dumps([json.loads(b), json.loads(a)]))
    assert prover.verify_batch_proof(swapped, task)
    with pytest.raises(ProverError, match="not in chain order"):
        prover.gen_batch_proof(json.dumps([json.loads(a), json.loads(c)]))
    with pytest.raises(ProverError, match="chunk proof 1 invalid"):
        prover.gen_batch_proof(json.dumps([json.loads(a), json.loads(flip(b, "proof", 999))]))


def _batch_infos(prover: RollerProver, *batches: str) -> str:
    """The batch infos a bundle task over these (verified) batch proofs determines."""
    return json.dumps([batch_info_of_instance(base64.b64decode(json.loads(b)["instance"]),
                                              json.loads(b)["block_count"]) for b in batches])


def test_mainnet_bundle_of_chained_batches(prover: RollerProver) -> None:
    """Bundle = recursion over batch proofs with the batch rules: chain order by roots, the
    task's count and order, a proof of other batches refused naming the field."""
    chunk = lambda first, n: json.loads(prover.gen_chunk_proof(json.dumps(mainnet(first, n))))  # noqa: E731
    c1, c2, c3, c4 = chunk(2640, 2), chunk(2642, 3), chunk(2645, 1), chunk(2646, 1)
    a = prover.gen_batch_proof(json.dumps([c1, c2]))
    b = prover.gen_batch_proof(json.dumps([c3, c4]))
    bundle = prover.gen_bundle_proof(json.dumps([json.loads(a), json.loads(b)]))
    parsed = json.loads(bundle)
    assert parsed["block_count"] == 7
    inst = base64.b64decode(parsed["instance"])
    assert len(inst) == 152 + 32 * 2
    assert inst[8:40] == base64.b64decode(json.loads(a)["instance"])[8:40]
    assert inst[40:72] == base64.b64decode(json.loads(b)["instance"])[40:72]
    task = _batch_infos(prover, a, b)
    assert prover.verify_bundle_proof(bundle, task)
    assert not prover.verify_bundle_proof(flip(bundle, "proof", 1234), task)
    assert prover.bundle_proof_rejection(bundle, _batch_infos(prover, a)) == (
        "instance field batch_count differs from the task: proof 2, task 1")
    reason = prover.bundle_proof_rejection(bundle, _batch_infos(prover, b, a))
    assert reason is not None and "do not chain" in reason
    # Given out of chain order: proved in chain order.
    swapped = prover.gen_bundle_proof(json.dumps([json.loads(b), json.loads(a)]))
    assert prover.verify_bundle_proof(swapped, task)
    # A valid bundle of other batches: refused, the field named.
    single = prover.gen_bundle_proof(json.dumps([json.loads(a)]))
    reason = prover.bundle_proof_rejection(single, _batch_infos(prover, b))
    assert reason is not None and "prev_state_root" in reason
    # Kinds are not interchangeable.
    with pytest.raises(ProverError, match="batch proof 0 invalid"):
        prover.gen_bundle_proof(json.dumps([c1]))
    assert not prover.verify_batch_proof(bundle, "[]")
    reason = prover.bundle_proof_rejection(a, task)
    assert reason is not None and "kind 1, expected 2" in reason
    with pytest.raises(ProverError, match="not in chain order"):
        prover.gen_bundle_proof(json.dumps([json.loads(a), json.loads(a)]))
    with pytest.raises(ProverError, match="empty bundle"):
        prover.gen_bundle_proof("[]")


def test_gil_is_released_while_proving(prover: RollerProver) -> None:
    traces = json.dumps(mainnet(2644, 1))
    ticks = 0
    done = threading.Event()

    def prove() -> None:
        prover.gen_chunk_proof(traces)
        done.set()

    worker = threading.Thread(target=prove, daemon=True)
    start = time.monotonic()
    worker.start()
    deadline = start + 600
    while not done.wait(0.01) and time.monotonic() < deadline:
        ticks += 1
    assert done.is_set(), "the proof did not finish in 600 s"
    worker.join()
    elapsed = time.monotonic() - start
    # With the GIL held for the whole proof the loop could not run at all (a tick or two
    # before the prover takes it). No rate: the prover saturates every core, so how often
    # this thread gets one says nothing about the GIL.
    assert elapsed > 0.3 and ticks >= 10, (elapsed, ticks)


def test_load_prover_is_cached_and_rejects_unknown_abi(prover: RollerProver) -> None:
    again = load_prover(None, os.environ.get("ROLLER_TEST_PARAMS") or prover._params)
    assert again is prover
    with pytest.raises(ProverError, match="unknown prover ABI"):
        load_prover(None, "/tmp", abi="bogus")
    with pytest.raises(ProverError, match="not found"):
        load_prover("/nonexistent/libx.so", "/tmp")


SEED_LIB_C = r"""
#include <stdlib.h>
#include <string.h>
static int inits = 0;
void init_prover(char *params, char *seed) { inits++; }
char *create_agg_proof_multi(char *traces) {
    if (inits != 1 || strstr(traces, "fail")) return NULL;
    const char *r = "{\"proof\":\"AAAA\",\"instance\":\"AAAA\",\"final_pair\":\"AAAA\","
                    "\"vk\":\"AAAA\",\"block_count\":1}";
    char *out = malloc(strlen(r) + 1);
    strcpy(out, r);
    return out;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_seed_abi_adapter(tmp_path: Path) -> None:
    src = tmp_path / "seed.c"
    src.write_text(SEED_LIB_C)
    lib = tmp_path / "libzkp.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    seed = load_prover(str(lib), str(tmp_path), abi="seed", seed_path=str(tmp_path / "seed"))
    assert json.loads(seed.gen_chunk_proof("[{}]"))["block_count"] == 1
    assert json.loads(seed.gen_chunk_proof("[{}]"))["block_count"] == 1  # init_prover ran once
    with pytest.raises(ProverError, match="unexpected end of JSON input"):
        seed.gen_chunk_proof('["fail"]')
    with pytest.raises(ProverError, match="not supported"):
        seed.gen_batch_proof("[]")
    with pytest.raises(ProverError, match="not supported"):
        seed.gen_bundle_proof("[]")
    with pytest.raises(ProverError, match="verify_agg_proof|init_verifier"):
        seed.verify_chunk_proof("{}", "{}")
    with pytest.raises(ProverError, match="seed path"):
        load_prover(str(lib), str(tmp_path / "other"), abi="seed")


def test_init_twice_is_harmless_and_failures_carry_a_message(
    prover: RollerProver, tmp_path: Path
) -> None:
    lib = prover._lib
    assert lib.init_chunk_verifier(prover._params.encode(), HOMESTEAD) == 0
    assert lib.init_chunk_verifier(prover._params.encode(), HOMESTEAD) == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert lib.init_batch_verifier(str(blocker / "params").encode(), HOMESTEAD) != 0
    assert "creating" in prover._last_error()
    assert lib.init_bundle_prover(str(blocker / "params").encode(), HOMESTEAD) != 0
    assert "creating" in prover._last_error()
    assert lib.init_chunk_verifier(prover._params.encode(), b"euclid") != 0
    assert "unknown fork" in prover._last_error()
    with pytest.raises(ProverError, match="init_chunk_prover failed"):
        load_prover(None, str(blocker / "other")).gen_chunk_proof("[]")


def test_one_error_convention(prover: RollerProver) -> None:
    """Every entry point: its failure value (NULL / 0 / non-zero), the message in
    prover_last_error on the calling thread, cleared by the next call."""
    lib = prover._lib
    assert lib.block_traces_to_chunk_info(b"[", 0, -1, HOMESTEAD) == roller_ffi().NULL
    assert "JSON" in prover._last_error()
    assert prover._last_error() != ""  # reading it does not clear it
    assert ord(lib.verify_bundle_proof(roller_ffi().NULL, b"[]", HOMESTEAD)) == 0
    assert "NULL" in prover._last_error() or "not initialised" in prover._last_error()
    assert lib.init_chunk_verifier(prover._params.encode(), HOMESTEAD) == 0
    assert prover._last_error() == ""
    with pytest.raises(ProverError, match="empty bundle"):
        prover.gen_bundle_proof("[]")
