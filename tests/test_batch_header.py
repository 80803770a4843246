"""The coordinator's codec v3/v4 batch header and blob (roller.protocol.batch_header), the
devnet's (roller.devnet.batch_data) and the worker's refusal of a header that disagrees.

Expected values are Scroll's published test expectations, each named by repository, file,
test function and commit:
- V3 = scroll-tech/da-codec `encoding/codecv3_test.go` @ 0bc23e8a0fdf613557f3b77c000c5c2ae6c83bb8
- V4 = scroll-tech/da-codec `encoding/codecv4_test.go` @ 102d4a3bc6adcf05c0121c81b61165a6c016769b
Their batches are da-codec's `testdata/blockTrace_0N.json` blocks, one chunk of one block
each; the same traces ship with the devnet (roller/devnet/data/traces, from scroll-tech/scroll
`common/testdata`).
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from roller.config import parse_config
from roller.devnet import batch_data
from roller.devnet.chainforks import ChainForks
from roller.devnet.http_coordinator import HttpCoordinator
from roller.devnet.http_tables import HttpCoordinatorConfig
from roller.devnet.tasksource import VERIFIED, TaskBook, TaskRecord, chunk_tasks
from roller.devnet.traces import (
    DATA_DIR,
    DEFAULT_TRACE_DIR,
    TraceIndex,
    load_trace_dir,
    read_trace_file,
)
from roller.devnet.verifier import StandInVerifier
from roller.errors import RollerError, WireFormatError
from roller.ffi.mock import MockProver
from roller.forks import CODEC_OF
from roller.lifecycle.failures import classify
from roller.protocol import batch_header as bh
from roller.protocol.encoding import go_dumps
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.http_messages import GetTaskResponse, to_task_msg
from roller.protocol.messages import AggProof, FailureClass, TaskMsg

# -- Scroll's published expectations -----------------------------------------------------------

# V3 TestCodecV3BatchEncode: the encoded header of the batch of blockTrace_0N (one chunk).
V3_ENCODED = {
    2: "030000000000000000000000000000000000000000000000009f81f6879f121da5b7a37535cdb21b3d5309"
       "9266de57b1fdf603ce32100ed54101bbc6b98d7d3783730b6208afac839ad37dcf211b9d9e7c83a5f9d021"
       "25ddd7000000000000000000000000000000000000000000000000000000000000000000000000638"
       "07b2a098f1f136f5734039818bee35222d35a96acd7d17120ce8816307527d19badea17d013be5ef696cfb"
       "c05b97bb322a587432c2cb23c4848d4d7cb8453c475b38d",
    4: "030000000000000000000000000000000b000000000000000bcaece1705bf2ce5e94154469d910ffe8d102"
       "419c5eb3152c0c6d237cf35c885f012e15203534ae3f4cbe1b0f58fe6db6e5c29432115a8ece6ef5550bf2"
       "ffce4c000000000000000000000000000000000000000000000000000000000000000000000000646"
       "b6e133e935190ba34184cc7bf61a54e030b0ec229292b3025c14c3ef7672b259521cf27c007dc51295c1fe"
       "2e05882128a62ef03fb30aaaa4415505929eac7f35424f2",
    5: "030000000000000000000000000000002a000000000000002a93255aa24dd468c5645f1e6901b8131a7a78"
       "a0eeb2a17cbb09ba64688a8de6b4015b4e3d3dcd64cc0eb6a5ad535d7a1844a8c4cdad366ec73557bcc533"
       "941370000000000000000000000000000000000000000000000000000000000000000000000000646"
       "b6ed030ba77ffda1712a0cfbbfce9facbc25a2370dc67d6480c686da47b7f181d527e132f281fd2bc84091"
       "14826d70e3148c93b9b4fee7b21c7680e750b3b0c5f6df2",
}
# V3 TestCodecV3BatchHash.
V3_HASH = {
    2: "0xc5065afb8f29f620ae1edb4c6ebaf7380faf4226fb83ee920d70d489fe51c5c2",
    4: "0xda944b66dcaa6dc1442be2230233e97286ee1ed3c51cde155a36643b293b07c4",
    5: "0x20e2324fac82e484c569eb286a221c61151c2b3c38a63b289f6ef6c30fb31e49",
}
# V3 TestCodecV3BatchHash, "empty daBatch" (version 3, every other field zero).
V3_EMPTY_HASH = "0x9f059299e02cd1ccaed5bbcc821843000ae6b992b68b55ff59a51252478681b0"
# V3 TestCodecV3BatchDataHash.
V3_DATA_HASH = {
    2: "0x9f81f6879f121da5b7a37535cdb21b3d53099266de57b1fdf603ce32100ed541",
    4: "0xcaece1705bf2ce5e94154469d910ffe8d102419c5eb3152c0c6d237cf35c885f",
    5: "0x93255aa24dd468c5645f1e6901b8131a7a78a0eeb2a17cbb09ba64688a8de6b4",
}
# V3 TestCodecV3BlobEncodingAndHashing: the 4844 blob in hex, trailing zeros trimmed (the rest
# of the 131072 bytes is zero), and its versioned hash.
V3_BLOB = {
    2: "00609c00fd0600240d0001000000e600f87180843b9aec2e8307a12094c0c4c800baea3f6acb49b6e1fb9e"
       "2adeceeacb0ca28a152d02c7e14af6000000808301009ecea0ab07ae99c67aa78e7ba5cf6781e90cc32b21"
       "9b1de102513d56548a4100e86df514a034cbd19feacd73e8ce64d00c4d1996b9b5243c578fd7f51bfaec00"
       "288bbaf42a8bf8710101bae6bf68e9a03fb2bc0615b1bf0d69ce9411edf03900985866d8256f10c1be4f7b"
       "2cace28d8f20bde27e2604393eb095b7f77316a0005a3e6e81065f2b4604bcec5bd4aba684835996fc3f87"
       "9380aac1c09c6eed3200f1030060b26d07d8b028b005",
    4: "0020d67d0100740200010000002000df0b80825dc0941a258d17bf244c4df02d0040343a7626a9d321e105"
       "808080808001002c0a1801",
    5: "0020b6550000180001000100300a0c01",
}
V3_VERSIONED_HASH = {
    2: "0x01bbc6b98d7d3783730b6208afac839ad37dcf211b9d9e7c83a5f9d02125ddd7",
    4: "0x012e15203534ae3f4cbe1b0f58fe6db6e5c29432115a8ece6ef5550bf2ffce4c",
    5: "0x015b4e3d3dcd64cc0eb6a5ad535d7a1844a8c4cdad366ec73557bcc533941370",
}
# V3 TestCodecV3BatchBlobDataProofForPointEvaluation, blockTrace_02: z | y | KZG commitment |
# KZG proof (the point evaluation precompile's input).
V3_POINT_EVALUATION_02 = (
    "098f1f136f5734039818bee35222d35a96acd7d17120ce8816307527d19badea17d013be5ef696cfbc05b97b"
    "b322a587432c2cb23c4848d4d7cb8453c475b38d90b7a581ba5b2cd6a916d139d2b7f28bf6997adb512653f6"
    "bdef0bbb7d681c742560fab406fd299c04fc1a464d277f8a8b3a918761888bd0f9a96cb9b2521347131a43b6"
    "33c4fa01470842d9fe4211bc59c990f69185b80def79b9dfbf039b75")
# V4 TestCodecV4BatchEncode / TestCodecV4BatchHash / TestCodecV4BlobEncodingAndHashing,
# blockTrace_05 (L1 messages only, so its blob is the uncompressed codec v4 form: flag 0).
V4_ENCODED_05 = (
    "040000000000000000000000000000002a000000000000002a93255aa24dd468c5645f1e6901b8131a7a78a0"
    "eeb2a17cbb09ba64688a8de6b4016ac24dabb9e1bbb3ec3c65b50a829564c2f56160ba92fbdb03ed7e4a0c43"
    "9a000000000000000000000000000000000000000000000000000000000000000000000000646b6ed004e124"
    "536a56f650b0994e58647e59087bf99ecadbd7bc730ad6290f229fb0715885a06aad250ef3594c65a7a6a0e2"
    "82175b1ad4d8b4063dac48e282bb5a9213")
V4_HASH_05 = "0x2c32177c8b4c6289d977361c7fd0f1a6ea15add64da2eb8caf0420ac9b35231e"
V4_BLOB_05 = "00000001"
V4_VERSIONED_HASH_05 = "0x016ac24dabb9e1bbb3ec3c65b50a829564c2f56160ba92fbdb03ed7e4a0c439a"
# V4 TestCodecV4BatchEncode / TestCodecV4BatchHash / TestCodecV4BlobEncodingAndHashing,
# blockTrace_02 (compressed: flag 1, then codec v3's frame).
V4_ENCODED_02 = (
    "040000000000000000000000000000000000000000000000009f81f6879f121da5b7a37535cdb21b3d530992"
    "66de57b1fdf603ce32100ed54101e5c897e0f98f6addd6c99bb51ff927cde93851b0d407aae3d7d5de75a31f"
    "2900000000000000000000000000000000000000000000000000000000000000000000000063807b2a26451e"
    "d31542ed15543973f8bc8c3b6382ba0cba5650a7faf14625377029203c1b6db22aa24613cb68dee10ca50bbb"
    "c88fc15b8a6abf9dcf3ad382a2642e480d")
V4_HASH_02 = "0x53d6da35c9b6f0413b6ebb80f4a8c19b0e3279481ddf602398a54d3b4e5d4f2c"
V4_BLOB_02 = (
    "0001609c00fd0600240d0001000000e600f87180843b9aec2e8307a12094c0c400c8baea3f6acb49b6e1fb9e"
    "2adeceeacb0ca28a152d02c7e14af6000000808300019ecea0ab07ae99c67aa78e7ba5cf6781e90cc32b219b"
    "1de102513d56548a0041e86df514a034cbd19feacd73e8ce64d00c4d1996b9b5243c578fd7f51bfa00ec288b"
    "baf42a8bf8710101bae6bf68e9a03fb2bc0615b1bf0d69ce9411edf00039985866d8256f10c1be4f7b2cace2"
    "8d8f20bde27e2604393eb095b7f7731600a05a3e6e81065f2b4604bcec5bd4aba684835996fc3f879380aac1"
    "c09c6eed0032f1030060b26d07d8b028b005")
V4_VERSIONED_HASH_02 = "0x01e5c897e0f98f6addd6c99bb51ff927cde93851b0d407aae3d7d5de75a31f29"
# V3 TestCodecV3DABatchJSONMarshalUnmarshal, Case 1 (the JSON da-codec marshals; the values
# are mainnet batch 293212's), and Case 2 (a version 4 header in the same test).
V3_JSON_CASE_1 = {
    "version": 3, "batch_index": 293212, "l1_message_popped": 7,
    "total_l1_message_popped": 904750,
    "data_hash": "0xa261ff31f8f78c19f65d14d6394eb911d53a3a3add9a9691b211caa5809be450",
    "blob_versioned_hash": "0x0120096572a3007f75c2a3ff82fa652976eae1c9428ec87ec258a8dcc84f488e",
    "parent_batch_hash": "0xc37d3f6881f0ca6b02b1dc071483e02d0fe88cf2ff3663bb1ba9aa0dc034faee",
    "last_block_timestamp": 1721130505,
    "blob_data_proof": ["0x496b144866cffedfd71423639984bf0d9ad4309ff7e35693f1baef3cdaf1471e",
                        "0x5eba7d42db109bfa124d1bc4dbcb421944b8aae6eae13a9d55eb460ce402785b"],
}
V3_JSON_CASE_2 = {
    "version": 4, "batch_index": 123, "l1_message_popped": 0, "total_l1_message_popped": 0,
    "parent_batch_hash": "0xabacadaeaf000000000000000000000000000000000000000000000000000000",
    "last_block_timestamp": 1720174236,
    "data_hash": "0xa1a518fa8e636dcb736629c296ed10341536c4cf850a3bc0a808d8d66d7f1ee6",
    "blob_versioned_hash": "0x01c61b784ba4cd0fd398717fdc3470729d1a28d70632d520174c9e47614c80e1",
    "blob_data_proof": ["0x1ee03153fd007529c214a68934b2cfd51e8586bd142e157564328946a0fc8899",
                        "0x118e196a9432c84c53db5a5a7bfbe13ef1ff8ffdba12fbccaf6360110eb71a10"],
}


def blob_of(trimmed_hex: str) -> bytes:
    """A blob from da-codec's trimmed hex (TrimRight of "0" may cut half a byte)."""
    data = bytes.fromhex(trimmed_hex + "0" * (len(trimmed_hex) % 2))
    return data + bytes(bh.BLOB_LEN - len(data))


def payload_of(blob: bytes) -> bytes:
    """The payload bytes of a blob (da-codec BytesFromBlobCanonical), zero padding included."""
    return b"".join(blob[i + 1:i + 32] for i in range(0, bh.BLOB_LEN, 32))


def trace(n: int) -> dict[str, Any]:
    """da-codec's testdata/blockTrace_0N.json, as the devnet ships it."""
    return dict(json.loads(read_trace_file(DATA_DIR / "traces" / f"blockTrace_0{n}.json.gz")))


# -- the header: encoding, hash, JSON ----------------------------------------------------------

@pytest.mark.parametrize("block", sorted(V3_ENCODED))
def test_the_193_byte_encoding_and_batch_hash_are_da_codec_s(block: int) -> None:
    encoded = bytes.fromhex(V3_ENCODED[block])
    header = bh.BatchHeader.from_bytes(encoded)
    assert header.encode() == encoded
    assert header.hash == V3_HASH[block]
    assert header.data_hash == V3_DATA_HASH[block]
    assert header.blob_versioned_hash == V3_VERSIONED_HASH[block]
    assert bh.BatchHeader.from_json(json.loads(json.dumps(header.to_json()))) == header


def test_the_empty_and_the_codec_v4_headers_hash_as_da_codec_s() -> None:
    zero = "0x" + "00" * 32
    empty = bh.BatchHeader(3, 0, 0, 0, zero, zero, zero, 0, (zero, zero))
    assert empty.hash == V3_EMPTY_HASH
    for encoded, expected in ((V4_ENCODED_05, V4_HASH_05), (V4_ENCODED_02, V4_HASH_02)):
        header = bh.BatchHeader.from_bytes(bytes.fromhex(encoded))
        assert header.version == 4 and header.hash == expected


@pytest.mark.parametrize("value", [V3_JSON_CASE_1, V3_JSON_CASE_2])
def test_da_codec_s_json_decodes_and_encodes_back(value: dict[str, Any]) -> None:
    header = bh.BatchHeader.from_json(value)
    assert header.to_json() == value  # dict equality: the member order does not matter
    assert header.batch_index == value["batch_index"]
    assert header.blob_data_proof == tuple(value["blob_data_proof"])
    # Go's decoder matches member names case-insensitively; so does this one.
    assert bh.BatchHeader.from_json({k.upper(): v for k, v in value.items()}) == header
    assert bh.BatchHeader.from_bytes(header.encode()) == header


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"data_hash": None}, "batch_header.data_hash", "missing"),
    ({"blob_versioned_hash": "0x01"}, "batch_header.blob_versioned_hash", "length 2, want 64"),
    ({"parent_batch_hash": "ab" * 32}, "batch_header.parent_batch_hash", "without 0x"),
    ({"version": 5}, "batch_header.version", "codec 5 has no v3 batch header"),
    ({"version": 256}, "batch_header.version", "out of range"),
    ({"batch_index": -1}, "batch_header.batch_index", "out of range"),
    ({"last_block_timestamp": "1"}, "batch_header.last_block_timestamp", "unsigned integer"),
    ({"blob_data_proof": ["0x" + "00" * 32]}, "batch_header.blob_data_proof", "expected [z, y]"),
    ({"blob_data_proof": ["0x" + "00" * 32, 5]}, "batch_header.blob_data_proof[1]", "hash"),
])
def test_a_malformed_header_is_refused_naming_the_key_path(
        change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(WireFormatError) as err:
        bh.BatchHeader.from_json({**V3_JSON_CASE_1, **change})
    assert err.value.field == field and reason in err.value.reason


def test_an_encoding_of_another_length_is_refused() -> None:
    with pytest.raises(WireFormatError, match="192 bytes, a v3 batch header has 193"):
        bh.BatchHeader.from_bytes(bytes.fromhex(V3_ENCODED[2])[:-1])


# -- the blob: KZG, payload, challenge ---------------------------------------------------------

@pytest.mark.parametrize("block", sorted(V3_BLOB))
def test_the_blob_versioned_hash_is_da_codec_s(block: int) -> None:
    blob = blob_of(V3_BLOB[block])
    assert "0x" + bh.versioned_hash(blob).hex() == V3_VERSIONED_HASH[block]


def test_z_and_y_and_the_kzg_proof_of_the_blocktrace_02_blob_are_da_codec_s() -> None:
    """The codec v3 blob of blockTrace_02 decompresses into batch bytes whose challenge point,
    evaluation, commitment and proof are da-codec's (its point evaluation data)."""
    blob = blob_of(V3_BLOB[2])
    vhash = bh.versioned_hash(blob)
    batch_bytes = bh.decompress(payload_of(blob))  # the blob's zero padding is allowed
    assert len(batch_bytes) == 412  # V3 TestCodecV3BatchSizeAndBlobSizeEstimation
    z = bh.challenge_point(batch_bytes, vhash)
    expected = bytes.fromhex(V3_POINT_EVALUATION_02)
    assert z == expected[:32]
    assert bh.evaluate(blob, z) == expected[32:64]
    assert bh.kzg_commitment(blob) == expected[64:112]
    assert bh.kzg_proof(blob, z) == expected[112:160]
    header = bh.BatchHeader.from_bytes(bytes.fromhex(V3_ENCODED[2]))
    assert (header.z, header.y) == (expected[:32], expected[32:64])


def test_the_uncompressed_codec_v4_blob_is_rebuilt_byte_for_byte() -> None:
    """blockTrace_05 pops L1 messages only: one chunk without L2 transactions. Its codec v4
    payload is the flag 0 and the bare metadata, so the whole blob, and from it the header's
    versioned hash, z and y, are made here from nothing but da-codec's rules."""
    payload = bh.blob_payload(bh.batch_bytes_from([b""]), 4, compressed=False)
    blob = bh.canonical_blob(payload)
    assert blob == blob_of(V4_BLOB_05)
    assert "0x" + bh.versioned_hash(blob).hex() == V4_VERSIONED_HASH_05
    header = bh.BatchHeader.from_bytes(bytes.fromhex(V4_ENCODED_05))
    rebuilt = bh.build_header(
        version=4, batch_index=0, l1_message_popped=42, total_l1_message_popped=42,
        chunk_data_hashes=[bytes.fromhex(  # V4 TestCodecV4ChunkHash, blockTrace_05
            "854fc3136f47ce482ec85ee3325adfa16a1a1d60126e1c119eaaf0c3a9e90f8e")],
        parent_batch_hash="0x" + "00" * 32, last_block_timestamp=0x646b6ed0, payload=payload)
    assert rebuilt == header and rebuilt.hash == V4_HASH_05


def test_the_compressed_codec_v4_blob_reads_as_codec_v3_s_frame() -> None:
    blob = blob_of(V4_BLOB_02)
    assert "0x" + bh.versioned_hash(blob).hex() == V4_VERSIONED_HASH_02
    payload = payload_of(blob)
    assert payload[0] == 1
    assert bh.batch_bytes_of(payload, 4) == bh.decompress(payload_of(blob_of(V3_BLOB[2])))
    header = bh.BatchHeader.from_bytes(bytes.fromhex(V4_ENCODED_02))
    z = bh.challenge_point(bh.batch_bytes_of(payload, 4), bh.versioned_hash(blob))
    assert (z, bh.evaluate(blob, z)) == (header.z, header.y)


def test_the_devnet_rebuilds_da_codec_s_batch_bytes_from_the_traces() -> None:
    """The signed transactions the devnet re-encodes from blockTrace_02 and _04 are the batch
    bytes inside da-codec's published blobs (V3 TestCodecV3BlobEncodingAndHashing)."""
    for block in (2, 4):
        expected = bh.decompress(payload_of(blob_of(V3_BLOB[block])))
        assert bh.batch_bytes_from([batch_data.chunk_tx_bytes([trace(block)])]) == expected
    # Every rebuilt encoding is checked against the trace's txHash: blockTrace_03's EIP-1559
    # transaction comes without its fee caps in this 2023 trace, so it cannot be rebuilt and
    # is left out of the devnet's blob.
    with pytest.raises(RollerError, match="does not hash to txHash 0x6b50040f"):
        batch_data.signed_tx_bytes(trace(3)["transactions"][0], "blockTrace_03")
    assert batch_data.chunk_tx_bytes([trace(3)]) == b""


def test_a_payload_that_is_not_scroll_s_is_refused_naming_blob_bytes() -> None:
    good = bh.compress(bh.batch_bytes_from([b"\x01\x02"]))
    for payload, reason in [(good[:-2], "truncated"), (b"\x00\x01", "content size"),
                            (good + b"\x07", "bytes after the zstd frame")]:
        with pytest.raises(WireFormatError) as err:
            bh.batch_bytes_of(payload, 3)
        assert err.value.field == "blob_bytes" and reason in err.value.reason
    with pytest.raises(WireFormatError, match="flag byte 2"):
        bh.batch_bytes_of(b"\x02" + good, 4)
    with pytest.raises(WireFormatError, match="sum to 3 bytes, the batch has 2"):
        bh.chunk_payloads(bh.batch_bytes_from([b"abc"])[:-1])
    with pytest.raises(WireFormatError, match="a blob holds at most 126976"):
        bh.canonical_blob(bytes(bh.MAX_BLOB_PAYLOAD + 1))


# -- the check ---------------------------------------------------------------------------------

def chunk_proof(data_hash: bytes, blocks: int, l1_included: int) -> AggProof:
    """A chunk proof with a native chunk instance (roller_prover.h layout): its data hash, and
    the byte length that says how many L1 messages it includes (codec v1+)."""
    length = 104 + 58 * blocks + 32 * l1_included + 32
    instance = (bytes(8) + bytes([1]) * 96 + data_hash + bytes([2]) * 64
                + length.to_bytes(8, "big") + blocks.to_bytes(8, "big"))
    assert len(instance) == 216
    return AggProof(b"p" * 32, instance, bytes(64), bytes(32), blocks)


CHUNK_TXS = (b"\xf8\x01chunk-0-transactions" * 3, b"chunk-1" * 5)
PROOFS = (chunk_proof(b"\xaa" * 32, 2, 2), chunk_proof(b"\xbb" * 32, 1, 0))


@functools.cache
def batch(codec: int = 4, proofs: tuple[AggProof, ...] = PROOFS,
          chunks: tuple[bytes, ...] = CHUNK_TXS) -> tuple[bh.BatchHeader, bytes]:
    """A consistent codec v3/v4 batch: its header pops 3 L1 messages (one skipped) of 10."""
    payload = bh.blob_payload(bh.batch_bytes_from(list(chunks)), codec)
    header = bh.build_header(
        version=codec, batch_index=7, l1_message_popped=3, total_l1_message_popped=10,
        chunk_data_hashes=[p.instance[104:136] for p in proofs],
        parent_batch_hash="0x" + "cd" * 32, last_block_timestamp=1_700_000_000,
        payload=payload)
    return header, payload


def flip(hex_hash: str) -> str:
    return hex_hash[:-1] + format(int(hex_hash[-1], 16) ^ 1, "x")


def refusal(header: bh.BatchHeader, payload: bytes, codec: int = 4,
            infos: list[str] | None = None) -> WireFormatError:
    with pytest.raises(WireFormatError) as err:
        bh.check_batch_header(header, payload, codec=codec, chunk_proofs=PROOFS,
                              chunk_info_hashes=infos)
    return err.value


@pytest.mark.parametrize("codec", [3, 4])
def test_a_header_that_agrees_passes(codec: int) -> None:
    header, payload = batch(codec)
    bh.check_batch_header(header, payload, codec=codec, chunk_proofs=PROOFS,
                          chunk_info_hashes=["0x" + "aa" * 32, "0x" + "bb" * 32])
    # Nothing else in a task binds these: altered alone, they pass (see the module).
    for unchecked in ({"batch_index": 8}, {"parent_batch_hash": "0x" + "00" * 32},
                      {"last_block_timestamp": 1}):
        bh.check_batch_header(replace(header, **unchecked), payload, codec=codec,
                              chunk_proofs=PROOFS)


@pytest.mark.parametrize(("field", "alter", "says"), [
    ("version", {"version": 3}, "codec 3, the task's fork commits with codec 4"),
    ("data_hash", "flip", "differs from the chunk proofs' batch data hash"),
    ("l1_message_popped", {"l1_message_popped": 1},
     "fewer than the 2 L1 messages the chunk proofs include"),
    ("total_l1_message_popped", {"total_l1_message_popped": 2},
     "less than the batch's own l1_message_popped 3"),
    ("blob_versioned_hash", "flip", "differs from the blob's"),
    ("blob_data_proof[0]", "flip", "differs from the blob's challenge point"),
    ("blob_data_proof[1]", "flip", "differs from the blob polynomial at z"),
])
def test_a_header_with_one_field_altered_is_refused_naming_it(
        field: str, alter: Any, says: str) -> None:
    header, payload = batch()
    if alter == "flip":
        if field.startswith("blob_data_proof"):
            i = int(field[-2])
            proof = list(header.blob_data_proof)
            proof[i] = flip(proof[i])
            alter = {"blob_data_proof": tuple(proof)}
        else:
            alter = {field: flip(getattr(header, field))}
    err = refusal(replace(header, **alter), payload)
    assert err.field == f"task_data.batch_header.{field}" and says in err.reason
    assert classify(err) is FailureClass.DETERMINISTIC


def test_a_blob_that_disagrees_is_refused() -> None:
    header, payload = batch()
    err = refusal(header, payload[:-1] + bytes([payload[-1] ^ 1]))
    assert err.field == "task_data.batch_header.blob_versioned_hash"
    # A blob of one chunk under a header made for it: the chunk count gives it away.
    one, one_payload = batch(chunks=(b"".join(CHUNK_TXS),))
    err = refusal(one, one_payload)
    assert err.field == "task_data.blob_bytes" and "holds 1 chunks" in err.reason
    # A chunk info naming another data hash than its proof attests.
    err = refusal(header, payload, infos=["0x" + "aa" * 32, "0x" + "cc" * 32])
    assert err.field == "task_data.chunk_infos[1].data_hash"


def test_a_mock_chunk_instance_adds_nothing_to_the_l1_bound() -> None:
    prover = MockProver()
    mock = AggProof.from_json(json.loads(prover.gen_chunk_proof(json.dumps([{}]))))
    assert bh.included_l1_messages(mock) is None
    assert bh.included_l1_messages(PROOFS[0]) == 2


# -- the batch task: the devnet's header, the worker's check ----------------------------------

@functools.cache
def proved_book(fork: str) -> tuple[TaskBook, TaskRecord, TraceIndex]:
    """The devnet's book of the shipped mainnet chain (blocks 2640-2688, chunks of 8, L1
    messages 208-212 in blocks 2644 and 2675) on `fork`, every chunk proved by the mock
    prover, and the batch task over them (read only from here on)."""
    index = load_trace_dir(DEFAULT_TRACE_DIR)
    book = TaskBook(batch=True)
    prover = MockProver()
    chunks = [book.add(t) for t in chunk_tasks(index, 8, ChainForks.from_genesis(fork))]
    for task in chunks:
        traces = "[" + ",".join(index.by_hash[h].raw.decode() for h in task.block_hashes) + "]"
        task.proof = AggProof.from_json(json.loads(prover.gen_chunk_proof(traces, fork)))
        task.state = VERIFIED
    record = book.on_verified(chunks[-1])
    assert record is not None
    return book, record, index


def devnet_batch(corrupt: str | None = None, gen: Generation = Generation.H3,
                 fork: str = "darwinV2") -> tuple[TaskRecord, str]:
    """The devnet's batch task (`proved_book`) and the task data it serves."""
    book, record, index = proved_book(fork)
    coord = HttpCoordinator(book, StandInVerifier(), HttpCoordinatorConfig(
        generation=gen, traces=index, corrupt_batch_header_field=corrupt))
    coord.state.batches = BATCH_TABLES.setdefault(fork, {})  # made once per fork (0.3 s)
    return record, coord._task_data(record)


BATCH_TABLES: dict[str, dict[str, Any]] = {}


def batch_task(record: TaskRecord, data: str, fork: str = "darwinV2",
               gen: Generation = Generation.H3) -> TaskMsg:
    return to_task_msg(GetTaskResponse(generation=gen, task_id=record.id,
                                       task_type=TaskType.BATCH, task_data=data, uuid="u-1",
                                       hard_fork_name=fork))


@pytest.mark.parametrize("fork", ["darwin", "darwinV2"])
def test_the_devnet_serves_a_header_the_roller_accepts(fork: str) -> None:
    record, data = devnet_batch(fork=fork)
    value = json.loads(data)
    header = bh.check_batch_task(batch_task(record, data, fork), fork)
    assert header is not None and header.version == CODEC_OF[fork]
    assert (header.l1_message_popped, header.total_l1_message_popped) == (5, 213)
    assert header.last_block_timestamp == 0x652619CD  # block 2688's
    assert header.to_json() == value["batch_header"]
    payload = base64.b64decode(value["blob_bytes"])
    chunks = bh.chunk_payloads(bh.batch_bytes_of(payload, header.version))
    assert len(chunks) == len(record.sub_proofs) == 7


@pytest.mark.parametrize("fork", ["curie", "homestead"])
def test_a_batch_of_an_earlier_codec_has_no_header_and_passes_unchecked(fork: str) -> None:
    record, data = devnet_batch(fork=fork)
    value = json.loads(data)
    assert value["batch_header"] is None and value["blob_bytes"] is None
    assert bh.check_batch_task(batch_task(record, data, fork), fork) is None


def test_a_header_served_for_a_task_of_an_earlier_fork_is_refused() -> None:
    record, data = devnet_batch()
    with pytest.raises(WireFormatError) as err:
        bh.check_batch_task(batch_task(record, data, "curie"), "curie")
    assert err.value.field == "task_data.batch_header.version"


def test_a_header_without_its_blob_is_refused() -> None:
    record, data = devnet_batch()
    value = json.loads(data)
    value["blob_bytes"] = None
    with pytest.raises(WireFormatError) as err:
        bh.check_batch_task(batch_task(record, go_dumps(value)), "darwinV2")
    assert err.value.field == "task_data.blob_bytes"


# What a mock-proved devnet batch lets the check see: every field but l1_message_popped
# (mock chunk instances say nothing of L1 messages), batch_index, parent_batch_hash and
# last_block_timestamp (nothing in a task binds them).
DETECTED = ("version", "data_hash", "total_l1_message_popped", "blob_versioned_hash",
            "blob_data_proof[0]", "blob_data_proof[1]", "blob_bytes")


@pytest.mark.parametrize("field", DETECTED)
def test_a_devnet_header_with_one_field_corrupted_is_refused_naming_it(field: str) -> None:
    record, data = devnet_batch(corrupt=field)
    with pytest.raises(WireFormatError) as err:
        bh.check_batch_task(batch_task(record, data), "darwinV2")
    named = "batch_header.blob_versioned_hash" if field == "blob_bytes" \
        else f"batch_header.{field}"
    assert err.value.field == f"task_data.{named}"


def test_every_corruptible_field_is_known() -> None:
    header, payload = batch()
    for field in batch_data.CORRUPTIBLE:
        value, altered = batch_data.corrupt(header.to_json(), payload, field)
        assert (value, altered) != (header.to_json(), payload)
    with pytest.raises(ValueError, match="cannot corrupt 'chunk_infos'"):
        batch_data.corrupt(header.to_json(), payload, "chunk_infos")


# -- the worker ------------------------------------------------------------------------------

def worker_ctx(tmp_path: Path, redis_url: str, prover: MockProver) -> Any:
    from roller.ledger import TaskLedger
    from roller.worker.job import JobContext
    from roller.worker.trace_client import TraceClient

    cfg = parse_config({
        "roller_name": "slot0", "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": "http://127.0.0.1:1", "trace_endpoint": "http://127.0.0.1:1",
        "broker_url": redis_url, "prover": {"forks": [{"name": "darwinV2"}]},
    }, tmp_path, env={})
    return JobContext(cfg=cfg, ledger=TaskLedger.from_url(redis_url), prover=prover,
                      traces=TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01),
                      worker="test")


@pytest.mark.parametrize("corrupt", [None, "data_hash", "blob_data_proof[1]"])
def test_the_worker_refuses_a_batch_whose_header_disagrees_and_proves_none(
        tmp_path: Path, redis_url: str, corrupt: str | None) -> None:
    """The real job path with the mock prover: a batch task whose header agrees is proved;
    one served with a field altered is answered with a deterministic failure naming the
    field, and no batch proof is made."""
    from roller.ledger import AssignResult, TaskState
    from roller.worker.job import JobOutcome, run_job

    prover = MockProver()
    ctx = worker_ctx(tmp_path, redis_url, prover)
    record, data = devnet_batch(corrupt=corrupt)
    task = batch_task(record, data)
    assert ctx.ledger.assign("slot0", task, epoch=1).result is AssignResult.NEW
    assert run_job(ctx, "slot0", task.id) is JobOutcome.STORED
    rec = ctx.ledger.get("slot0", task.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.proof is not None
    if corrupt is None:
        assert rec.proof.status == 0 and prover.calls == ["batch"]
        return
    assert rec.proof.status != 0 and rec.proof.proof is None
    assert rec.proof.failure_class is FailureClass.DETERMINISTIC
    assert f"'task_data.batch_header.{corrupt}'" in rec.proof.error
    assert prover.calls == []


def test_a_kzg_setup_that_cannot_load_is_a_transient_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's fault, not the task's: the task is answered as transient, not given up."""
    def broken() -> Any:
        raise RollerError("KZG trusted setup /x cannot be loaded: error reading trusted setup")

    record, data = devnet_batch()
    monkeypatch.setattr(bh, "kzg_setup", broken)
    with pytest.raises(RollerError) as err:
        bh.check_batch_task(batch_task(record, data), "darwinV2")
    assert not isinstance(err.value, WireFormatError)
    assert classify(err.value) is FailureClass.TRANSIENT
