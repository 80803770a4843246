"""Scroll chunk data hash and public input hash (coordinator-protocol.md section 10), computed here
independently and compared with the native prover's chunk info and proof instance."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from eth_hash.auto import keccak

from roller.errors import ProverError
from roller.ffi import default_library_path
from roller.ffi.native import RollerProver

DATA = Path(__file__).resolve().parents[1] / "roller" / "devnet" / "data"
TRACES = DATA / "traces"
L1_MESSAGE = 126

pytestmark = pytest.mark.skipif(
    not Path(default_library_path()).exists(), reason="native prover library not built"
)


def trace(name: str) -> dict[str, Any]:
    with gzip.open(TRACES / f"blockTrace_{name}.json.gz", "rt") as f:
        return dict(json.load(f))


def h256(value: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    return raw.rjust(32, b"\0")


def num(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def l1_messages(block: dict[str, Any], popped: int) -> int:
    """Scroll's NumL1Messages: last L1 queue index - popped + 1, 0 without L1 messages; an error
    (never a wrap-around) below 0 or over u16."""
    l1 = [tx for tx in block["transactions"] if tx["type"] == L1_MESSAGE]
    if not l1:
        return 0
    n = num(l1[-1]["nonce"]) - popped + 1
    assert 0 < n <= 0xFFFF
    return n


def block_context(block: dict[str, Any], popped: int, base_fee: bool = True) -> bytes:
    h = block["header"]
    fee = num(h["baseFeePerGas"]) if base_fee and h.get("baseFeePerGas") else 0
    return (
        num(h["number"]).to_bytes(8, "big")
        + num(h["timestamp"]).to_bytes(8, "big")
        + fee.to_bytes(32, "big")  # da-codec: the header's base fee, 0 when it has none
        + num(h["gasLimit"]).to_bytes(8, "big")
        + len(block["transactions"]).to_bytes(2, "big")
        + l1_messages(block, popped).to_bytes(2, "big")
    )


def data_hash(blocks: list[dict[str, Any]], popped_before: int = 0, base_fee: bool = True
              ) -> bytes:
    data = b""
    popped = popped_before
    for b in blocks:
        data += block_context(b, popped, base_fee)[:58]
        popped += l1_messages(b, popped)
    for b in blocks:
        txs = b["transactions"]
        for tx in [t for t in txs if t["type"] == L1_MESSAGE] + [
            t for t in txs if t["type"] != L1_MESSAGE
        ]:
            data += h256(tx["txHash"])
    return bytes(keccak(data))


def pi_hash(chain_id: int, blocks: list[dict[str, Any]]) -> bytes:
    last = blocks[-1]
    withdraw = last.get("withdraw_trie_root") or last["withdrawTrieRoot"]
    return bytes(
        keccak(
            chain_id.to_bytes(8, "big")
            + h256(blocks[0]["storageTrace"]["rootBefore"])
            + h256(last["header"]["stateRoot"])
            + h256(withdraw)
            + data_hash(blocks)
        )
    )


# Scroll's own 2023 chunk hash test (scroll-tech/scroll common/types/chunk_test.go, TestChunkHash,
# rollup v2) for these trace files: that code wrote a zero base fee into every block context.
SCROLL_2023 = {
    ("02",): "0x78c839dfc494396c16b40946f32b3f4c3e8c2d4bfd04aefcf235edec474482f8",
    ("02", "03"): "0xaa9e494f72bc6965857856f0fae6916f27b2a6591c714a573b2fab46df03b8ae",
    ("04",): None,
}
# da-codec (encoding/codecv0_test.go, TestCodecV0ChunkHash): the header's base fee (0x1de9 here).
DA_CODEC = {("02",): "0xde642c68122634b33fa1e6e4243b17be3bfd0dc6f996f204ef6d7522516bd840"}


@pytest.mark.parametrize("names", list(SCROLL_2023), ids=["+".join(c) for c in SCROLL_2023])
def test_chunk_info_matches_independent_hash(prover: RollerProver, names: tuple[str, ...]) -> None:
    blocks = [trace(n) for n in names]
    info = prover.chunk_info(json.dumps(blocks), chain_id=534352, l1_messages_popped_before=0)
    if SCROLL_2023[names]:
        assert "0x" + data_hash(blocks, base_fee=False).hex() == SCROLL_2023[names]
    if names in DA_CODEC:
        assert "0x" + data_hash(blocks).hex() == DA_CODEC[names]
    assert info["data_hash"] == "0x" + data_hash(blocks).hex()
    assert info["chain_id"] == 534352  # no chainID in these traces: the caller's
    assert info["public_input_hash"] == "0x" + pi_hash(534352, blocks).hex()
    assert info["block_count"] == len(blocks)


def test_chain_id_is_required_without_chain_id_in_traces(prover: RollerProver) -> None:
    with pytest.raises(ProverError, match="chain_id"):
        prover.chunk_info(json.dumps([trace("02")]))


def test_l1_message_counts_do_not_wrap(prover: RollerProver) -> None:
    block = trace("04")
    nonce = block["transactions"][0]["nonce"]
    # Popped before given: the count is relative to it (da-codec's 0x000b for this block).
    info = prover.chunk_info(json.dumps([block]), chain_id=1, l1_messages_popped_before=0)
    assert info["num_l1_messages"] == [nonce + 1]
    assert info["l1_messages_popped_after"] == nonce + 1
    # Not given: the chunk starts popping at its first L1 message.
    info = prover.chunk_info(json.dumps([block]), chain_id=1)
    assert info["num_l1_messages"] == [1]
    # The same block twice pops below what was popped: an error (Go wrapped to 2^64-1 here).
    with pytest.raises(ProverError, match="below"):
        prover.chunk_info(json.dumps([block, block]), chain_id=1, l1_messages_popped_before=0)


@pytest.mark.parametrize("names", [["02"], ["02", "03"]], ids=["02", "02+03"])
def test_proof_instance_matches_independent_hash(prover: RollerProver, names: list[str]) -> None:
    blocks = [trace(n) for n in names]
    proof = json.loads(RollerProver(prover._path, prover._params, chain_id=534352)
                       .gen_chunk_proof(json.dumps(blocks)))
    inst = base64.b64decode(proof["instance"])
    assert inst[104:136] == data_hash(blocks)
    assert inst[136:168] == pi_hash(534352, blocks)
    assert base64.b64decode(proof["final_pair"])[:32] == pi_hash(534352, blocks)


def test_04_twice_is_not_provable(prover: RollerProver) -> None:
    # Same block number twice: a chunk info exists (Scroll's encoding test) but no valid chunk.
    with pytest.raises(ProverError, match="out of order"):
        RollerProver(prover._path, prover._params, 534352).gen_chunk_proof(
            json.dumps([trace("04"), trace("04")]))


def test_l1_messages_popped_carry_across_a_batch_of_mainnet_chunks(prover: RollerProver) -> None:
    """Shipped mainnet blocks 2640-2688 in chunks of 8: the carried count equals each chunk's own
    startL1QueueIndex, and the 5 L1 messages are each counted once."""
    chain = DATA / "chain-534352"
    blocks = []
    for n in range(2640, 2689):
        with gzip.open(chain / f"block_{n}.json.gz", "rt") as f:
            blocks.append(json.load(f))
    chunks = [blocks[i : i + 8] for i in range(0, len(blocks), 8)]
    infos = prover.batch_chunk_infos([json.dumps(c) for c in chunks])
    for chunk, info in zip(chunks, infos, strict=True):
        assert info["l1_messages_popped_before"] == chunk[0]["startL1QueueIndex"]
    assert infos[0]["l1_messages_popped_before"] == 208
    assert sum(sum(i["num_l1_messages"]) for i in infos) == 5
    assert infos[-1]["l1_messages_popped_after"] == 213
