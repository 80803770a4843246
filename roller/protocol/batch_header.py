"""The coordinator's batch header (codec v3/v4) and its blob, checked against the batch task.

From H3 (Scroll coordinator v4.4.37+) a batch task's data carries ``batch_header``, the
batch's da-codec DABatch as JSON, and ``blob_bytes``, the batch's blob payload in base64; both
are ``null`` unless the batch's codec is v3 (Darwin) or v4 (DarwinV2) (spec
coordinator-http-protocol 5.3; scroll-tech/scroll `batch_prover_task.go getBatchTaskDetail`:
`codec.NewDABatchFromBytes(dbBatch.BatchHeader)`, `dbBatch.BlobBytes`). This module reads
both exactly as scroll-tech/da-codec writes them and refuses, before a batch is proved, a
header that disagrees with the task's own chunk proofs or with its blob: a batch proof of
these chunks could never match it.

The header (da-codec `encoding/codecv3_types.go` daBatchV3, and the v0.1.x
`codecv3.DABatch`/`codecv4.DABatch` structs the H3 coordinators link): JSON members
``version`` (u8), ``batch_index``, ``l1_message_popped``, ``total_l1_message_popped`` (u64),
``data_hash``, ``blob_versioned_hash``, ``parent_batch_hash`` (go-ethereum `common.Hash`:
0x + 64 hex), ``last_block_timestamp`` (u64) and ``blob_data_proof`` ([z, y], two hashes);
its 193-byte encoding is version u8 | batch index u64 | L1 messages popped u64 | total L1
messages popped u64 | data hash | blob versioned hash | parent batch hash | last block
timestamp u64 | z | y, all big-endian, and the batch hash is keccak256 of it.

The blob (da-codec `codecv3.go`/`codecv4.go` constructBlobPayload): the batch bytes are a
metadata of 2 + 4 * 45 bytes (the chunk count u16, then each chunk's byte size u32, zero past
the last chunk) followed by each chunk's L2 transactions (their signed EIP-2718 encodings;
L1 messages are not in the blob). The blob payload (`blob_bytes`) is, for codec v3, those
bytes compressed with Scroll's zstd settings (a frame without its magic number, content size
included); for codec v4 one flag byte, 1 then the compressed bytes or 0 then the batch bytes
as they are. The 4844 blob puts 31 payload bytes in each of its 4096 field elements (a zero
top byte each); its versioned hash is 0x01 | sha256(KZG commitment)[1:]; the challenge point z
is keccak256(keccak256(metadata) | keccak256 of each chunk's bytes, the last one repeated to
45 | blob versioned hash) mod the BLS12-381 scalar field, and y the blob polynomial at z.

What is checked, against what (`check_batch_header`), each refusal naming the field:
- ``version``: the codec of the fork the task is proved under (roller.forks.CODEC_OF);
- ``data_hash``: keccak256 of the chunks' data hashes in order (da-codec's batch data hash,
  the same for codecs v0..v4); each chunk's data hash is the one its chunk proof attests
  (chunk instance bytes 104..136), and a ``chunk_infos`` entry naming another is refused
  (``chunk_infos[i].data_hash``); for a proof not of this prover's layout, the chunk info's;
- ``l1_message_popped``: at least the L1 messages the chunk proofs include (a lower bound:
  messages a block skips are popped too but appear in no chunk proof); a chunk proof tells
  its count through its instance's byte length (roller_prover.h: len = 104 + 58 blocks + 32
  included L1 messages + 32 for codec v1+), and one whose instance is not of that layout (a
  mock proof) adds nothing to the bound;
- ``total_l1_message_popped``: not below ``l1_message_popped`` (da-codec: the batch pops
  total after - total before);
- ``blob_versioned_hash``: the KZG versioned hash of ``blob_bytes``;
- ``blob_bytes``: decodes under the header's codec into batch bytes of as many chunks as the
  task has chunk proofs;
- ``blob_data_proof[0]`` (z): recomputed from the batch bytes as above;
- ``blob_data_proof[1]`` (y): the blob polynomial evaluated at z (c-kzg-4844's
  compute_kzg_proof, Ethereum's trusted setup).
Not checked, because nothing else in the task carries them: ``batch_index``,
``parent_batch_hash``, ``last_block_timestamp``, and ``total_l1_message_popped`` beyond the
bound above (it is the parent batch's total plus this batch's pops). On a real coordinator
the batch hash (keccak of the 193 bytes) is the task id and would bind them all; the devnet
names its batch tasks otherwise, so the hash is computed (`BatchHeader.hash`) but not
compared. A header-less batch task (codec v0..v2, an H1/H2 coordinator) is not checked.

Failure model: pure functions but for the KZG trusted setup, loaded once per process from
the file eth-account ships (Ethereum's KZG ceremony output, c-kzg-4844's format). A header or
blob that is malformed or disagrees raises WireFormatError naming the key path under
``task_data`` (the task's fault: deterministic); a trusted setup that cannot be loaded
raises RollerError (the worker's fault: the failure is transient).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import ckzg
import zstandard
from eth_utils.crypto import keccak

from roller.errors import RollerError, WireFormatError
from roller.forks import CODEC_OF, canonical
from roller.protocol.encoding import (
    UINT8_MAX,
    UINT64_MAX,
    check_uint,
    decode_bytes,
    decode_list,
    decode_uint,
    join,
    object_members,
    parse_hash,
)
from roller.protocol.http_messages import from_task_msg
from roller.protocol.http_proofs import CHUNK_INSTANCE_LEN
from roller.protocol.messages import AggProof, ProveType, TaskMsg

# The codecs whose batches carry this header (da-codec CodecV3, CodecV4).
HEADER_CODECS = (3, 4)
ENCODED_LEN = 193
# da-codec Codecv3MaxNumChunks = Codecv4MaxNumChunks.
MAX_NUM_CHUNKS = 45
METADATA_LEN = 2 + 4 * MAX_NUM_CHUNKS
FIELD_ELEMENTS = 4096
BLOB_LEN = 32 * FIELD_ELEMENTS
MAX_BLOB_PAYLOAD = 31 * FIELD_ELEMENTS  # 126976, da-codec's "Blob payload exceeds maximum size"
BLS_MODULUS = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
ZSTD_MAGIC = bytes.fromhex("28b52ffd")
# A guard against a decompression bomb, not a Scroll rule: da-codec bounds the compressed
# payload (126976 bytes), not the batch bytes; 16 MiB is far past any batch Scroll proposes.
MAX_BATCH_BYTES = 16 << 20
# The largest `len` a native chunk instance carries (roller_prover.h: the largest bucket).
MAX_CHUNK_INSTANCE_BYTES = 24576

FIELDS = ("version", "batch_index", "l1_message_popped", "total_l1_message_popped",
          "data_hash", "blob_versioned_hash", "parent_batch_hash", "last_block_timestamp",
          "blob_data_proof")
_HASHES = ("data_hash", "blob_versioned_hash", "parent_batch_hash")
_U64S = ("batch_index", "l1_message_popped", "total_l1_message_popped",
         "last_block_timestamp")


def _b32(hex_hash: str) -> bytes:
    return bytes.fromhex(hex_hash[2:])


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass(frozen=True)
class BatchHeader:
    """A codec v3/v4 batch header (da-codec daBatchV3). Hashes are canonical lowercase 0x
    hex; ``blob_data_proof`` is (z, y). Construction validates every field and raises
    WireFormatError naming it."""

    version: int
    batch_index: int
    l1_message_popped: int
    total_l1_message_popped: int
    data_hash: str
    blob_versioned_hash: str
    parent_batch_hash: str
    last_block_timestamp: int
    blob_data_proof: tuple[str, str]

    def __post_init__(self) -> None:
        check_uint(self.version, "version", UINT8_MAX)
        if self.version not in HEADER_CODECS:
            raise WireFormatError("version", f"codec {self.version} has no v3 batch header "
                                  f"(da-codec writes it for codecs 3 and 4)")
        for name in _U64S:
            check_uint(getattr(self, name), name, UINT64_MAX)
        for name in _HASHES:
            object.__setattr__(self, name, parse_hash(getattr(self, name), name))
        proof = self.blob_data_proof
        if isinstance(proof, str) or not isinstance(proof, tuple | list) or len(proof) != 2:
            raise WireFormatError("blob_data_proof", "expected [z, y]")
        object.__setattr__(self, "blob_data_proof", (
            parse_hash(proof[0], "blob_data_proof[0]"),
            parse_hash(proof[1], "blob_data_proof[1]")))

    @property
    def z(self) -> bytes:
        return _b32(self.blob_data_proof[0])

    @property
    def y(self) -> bytes:
        return _b32(self.blob_data_proof[1])

    def encode(self) -> bytes:
        """The 193 bytes da-codec's Encode writes (and the rollup contract hashes)."""
        def u64(value: int) -> bytes:
            return value.to_bytes(8, "big")

        return b"".join((
            bytes([self.version]), u64(self.batch_index), u64(self.l1_message_popped),
            u64(self.total_l1_message_popped), _b32(self.data_hash),
            _b32(self.blob_versioned_hash), _b32(self.parent_batch_hash),
            u64(self.last_block_timestamp), self.z, self.y))

    @property
    def hash(self) -> str:
        """The batch hash: keccak256 of the encoding (da-codec daBatchV3.Hash)."""
        return _hex(keccak(self.encode()))

    @classmethod
    def from_bytes(cls, data: bytes, path: str = "batch_header") -> Self:
        """da-codec NewDABatchFromBytes for codec v3/v4."""
        if len(data) != ENCODED_LEN:
            raise WireFormatError(path, f"{len(data)} bytes, a v3 batch header has "
                                  f"{ENCODED_LEN}")
        def u64(at: int) -> int:
            return int.from_bytes(data[at:at + 8], "big")

        def h(at: int) -> str:
            return _hex(data[at:at + 32])

        try:
            return cls(version=data[0], batch_index=u64(1), l1_message_popped=u64(9),
                       total_l1_message_popped=u64(17), data_hash=h(25),
                       blob_versioned_hash=h(57), parent_batch_hash=h(89),
                       last_block_timestamp=u64(121), blob_data_proof=(h(129), h(161)))
        except WireFormatError as exc:
            raise WireFormatError(join(path, exc.field), exc.reason) from exc

    def to_json(self) -> dict[str, Any]:
        """As da-codec's JSON (the member order of the v0.1.x struct the H3 coordinators
        link; da-codec's later MarshalJSON writes the same members and values)."""
        return {name: list(self.blob_data_proof) if name == "blob_data_proof"
                else getattr(self, name) for name in FIELDS}

    @classmethod
    def from_json(cls, value: Any, path: str = "batch_header") -> Self:
        """Decode da-codec's JSON like Go (member names case-insensitive, unknown members
        ignored) but strictly: every member must be there, with its JSON type (da-codec
        writes them all, never null)."""
        m = object_members(value, path, FIELDS)
        for name in FIELDS:
            if m.get(name) is None:
                raise WireFormatError(join(path, name), "missing (da-codec always writes it)")
        proof_path = join(path, "blob_data_proof")
        proof = [parse_hash(v, p) for p, v in decode_list(m["blob_data_proof"], proof_path)]
        if len(proof) != 2:
            raise WireFormatError(proof_path, f"{len(proof)} elements, expected [z, y]")
        version = decode_uint(m["version"], join(path, "version"), UINT8_MAX)
        if version not in HEADER_CODECS:
            raise WireFormatError(join(path, "version"), f"codec {version} has no v3 batch "
                                  f"header (da-codec writes it for codecs 3 and 4)")
        def u64(name: str) -> int:
            return decode_uint(m[name], join(path, name), UINT64_MAX)

        def h(name: str) -> str:
            return parse_hash(m[name], join(path, name))

        return cls(version=version, batch_index=u64("batch_index"),
                   l1_message_popped=u64("l1_message_popped"),
                   total_l1_message_popped=u64("total_l1_message_popped"),
                   data_hash=h("data_hash"), blob_versioned_hash=h("blob_versioned_hash"),
                   parent_batch_hash=h("parent_batch_hash"),
                   last_block_timestamp=u64("last_block_timestamp"),
                   blob_data_proof=(proof[0], proof[1]))


# -- the blob ---------------------------------------------------------------------------------

_setup_lock = threading.Lock()


@functools.cache
def _setup_path() -> Path:
    import eth_account  # its package ships c-kzg-4844's trusted_setup.txt

    return (Path(eth_account.__file__).resolve().parent / "typed_transactions"
            / "blob_transactions" / "kzg_trusted_setup.txt")


@functools.cache
def _loaded_setup() -> Any:
    path = _setup_path()
    try:
        return ckzg.load_trusted_setup(str(path), 0)
    except (OSError, RuntimeError, ValueError) as exc:
        raise RollerError(f"KZG trusted setup {path} cannot be loaded: {exc}") from exc


def kzg_setup() -> Any:
    """Ethereum's KZG trusted setup, loaded once per process (about 5 s; RollerError if the
    file is missing or unreadable)."""
    with _setup_lock:  # one load, whichever thread asks first
        return _loaded_setup()


def canonical_blob(payload: bytes, path: str = "blob_bytes") -> bytes:
    """The 4844 blob of a payload (da-codec MakeBlobCanonical): 31 bytes per field element
    under a zero top byte, zero padded. WireFormatError if the payload does not fit."""
    if len(payload) > MAX_BLOB_PAYLOAD:
        raise WireFormatError(path, f"{len(payload)} bytes, a blob holds at most "
                              f"{MAX_BLOB_PAYLOAD}")
    out = bytearray(BLOB_LEN)
    for i in range(0, len(payload), 31):
        part = payload[i:i + 31]
        at = i // 31 * 32 + 1
        out[at:at + len(part)] = part
    return bytes(out)


def kzg_commitment(blob: bytes) -> bytes:
    return bytes(ckzg.blob_to_kzg_commitment(blob, kzg_setup()))


def versioned_hash(blob: bytes) -> bytes:
    """EIP-4844 kzg_to_versioned_hash of the blob's commitment (go-ethereum CalcBlobHashV1)."""
    return b"\x01" + hashlib.sha256(kzg_commitment(blob)).digest()[1:]


def evaluate(blob: bytes, z: bytes) -> bytes:
    """y = the blob polynomial at z (32 bytes, big-endian), as da-codec's
    blobDataProofForPICircuit takes it from kzg4844.ComputeProof. z must be below the BLS
    modulus."""
    _proof, y = ckzg.compute_kzg_proof(blob, z, kzg_setup())
    return bytes(y)


def kzg_proof(blob: bytes, z: bytes) -> bytes:
    """The KZG opening proof at z (the point evaluation precompile's input, with z, y and
    the commitment)."""
    proof, _y = ckzg.compute_kzg_proof(blob, z, kzg_setup())
    return bytes(proof)


def decompress(data: bytes, path: str = "blob_bytes") -> bytes:
    """Batch bytes from a Scroll zstd frame (its magic number left out, content size in the
    frame header), as da-codec DecompressScrollBlobToBatch; WireFormatError if it is not a
    whole frame, or says it holds more than MAX_BATCH_BYTES."""
    frame = ZSTD_MAGIC + data
    try:
        size = zstandard.get_frame_parameters(frame).content_size
    except zstandard.ZstdError as exc:
        raise WireFormatError(path, f"not a zstd frame: {exc}") from exc
    if size == zstandard.CONTENTSIZE_UNKNOWN or size > MAX_BATCH_BYTES:
        raise WireFormatError(path, "the zstd frame does not give a content size of at most "
                              f"{MAX_BATCH_BYTES} bytes (Scroll's encoder writes it)")
    reader = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = reader.decompress(frame)
    except zstandard.ZstdError as exc:
        raise WireFormatError(path, f"zstd frame does not decompress: {exc}") from exc
    if not reader.eof or len(out) != size:
        raise WireFormatError(path, "truncated zstd frame")
    if reader.unused_data.strip(b"\x00"):
        # Zero padding is what a blob holds past its payload; anything else is not Scroll's.
        raise WireFormatError(path, "bytes after the zstd frame")
    return bytes(out)


def compress(batch_bytes: bytes) -> bytes:
    """A zstd frame of the batch bytes in Scroll's frame format (no magic number, no
    checksum, no dictionary id, content size written). Not byte-for-byte Scroll's encoder
    (its settings live in a Rust library): what the devnet serves, decodable by da-codec."""
    params = zstandard.ZstdCompressionParameters.from_level(
        19, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=0, write_content_size=1,
        write_dict_id=0)
    return bytes(zstandard.ZstdCompressor(compression_params=params).compress(batch_bytes))


def circuit_compatible(frame: bytes) -> bool:
    """da-codec CheckCompressedDataCompatibility: a single-segment frame header without
    checksum or dictionary, and only compressed blocks (what Scroll's circuit decodes)."""
    if len(frame) < 16 or frame[0] & 63 != 32:
        return False
    data = frame[(2, 3, 5, 9)[frame[0] >> 6]:]
    last = False
    while len(data) > 3 and not last:
        last = bool(data[0] & 1)
        size = int.from_bytes(data[:3], "little") >> 3
        if (data[0] >> 1) & 3 != 2 or len(data) < 3 + size:
            return False
        data = data[3 + size:]
    return last


def batch_bytes_of(payload: bytes, version: int, path: str = "blob_bytes") -> bytes:
    """The batch bytes a codec v3/v4 blob payload holds (da-codec DecodeTxsFromBlob)."""
    if version == 3:
        return decompress(payload, path)
    if not payload:
        raise WireFormatError(path, "empty codec v4 payload (no flag byte)")
    if payload[0] == 1:
        return decompress(payload[1:], path)
    if payload[0] == 0:
        return payload[1:]
    raise WireFormatError(path, f"codec v4 flag byte {payload[0]} (1 compressed, 0 not)")


def chunk_payloads(batch_bytes: bytes, path: str = "blob_bytes") -> tuple[bytes, ...]:
    """Each chunk's L2 transaction bytes, from the batch bytes' metadata; WireFormatError if
    the metadata does not describe the bytes exactly (da-codec constructBlobPayload writes
    the metadata, then every chunk's bytes, nothing else)."""
    if len(batch_bytes) < METADATA_LEN:
        raise WireFormatError(path, f"{len(batch_bytes)} batch bytes, shorter than the "
                              f"{METADATA_LEN}-byte metadata")
    count = int.from_bytes(batch_bytes[:2], "big")
    if not 1 <= count <= MAX_NUM_CHUNKS:
        raise WireFormatError(path, f"the metadata names {count} chunks (1..{MAX_NUM_CHUNKS})")
    sizes = [int.from_bytes(batch_bytes[2 + 4 * i:6 + 4 * i], "big")
             for i in range(MAX_NUM_CHUNKS)]
    if any(sizes[count:]):
        raise WireFormatError(path, f"chunk sizes past the {count} chunks are not zero")
    if METADATA_LEN + sum(sizes) != len(batch_bytes):
        raise WireFormatError(path, f"the metadata's chunk sizes sum to {sum(sizes)} bytes, "
                              f"the batch has {len(batch_bytes) - METADATA_LEN}")
    out, at = [], METADATA_LEN
    for size in sizes[:count]:
        out.append(batch_bytes[at:at + size])
        at += size
    return tuple(out)


def batch_bytes_from(chunks: Sequence[bytes]) -> bytes:
    """The batch bytes of chunks' L2 transaction bytes (da-codec constructBlobPayload)."""
    if not 1 <= len(chunks) <= MAX_NUM_CHUNKS:
        raise ValueError(f"{len(chunks)} chunks (1..{MAX_NUM_CHUNKS})")
    meta = bytearray(METADATA_LEN)
    meta[0:2] = len(chunks).to_bytes(2, "big")
    for i, c in enumerate(chunks):
        meta[2 + 4 * i:6 + 4 * i] = len(c).to_bytes(4, "big")
    return bytes(meta) + b"".join(chunks)


def blob_payload(batch_bytes: bytes, version: int, compressed: bool = True) -> bytes:
    """The blob payload of batch bytes under codec `version`: v3 always compressed; v4 with
    its flag byte, compressed when asked and the frame is one Scroll's circuit decodes (as
    da-codec v4 falls back to the raw bytes otherwise)."""
    if version == 3:
        return compress(batch_bytes)
    if version != 4:
        raise ValueError(f"codec {version} has no blob payload here")
    if compressed:
        frame = compress(batch_bytes)
        if circuit_compatible(frame):
            return b"\x01" + frame
    return b"\x00" + batch_bytes


def challenge_point(batch_bytes: bytes, blob_versioned_hash: bytes,
                    path: str = "blob_bytes") -> bytes:
    """z (32 bytes): keccak256(keccak256(metadata) | each chunk's keccak256, the last one
    repeated to MAX_NUM_CHUNKS | blob versioned hash) mod the BLS modulus (da-codec
    constructBlobPayload)."""
    hashes = [keccak(c) for c in chunk_payloads(batch_bytes, path)]
    hashes += [hashes[-1]] * (MAX_NUM_CHUNKS - len(hashes))
    digest = keccak(keccak(batch_bytes[:METADATA_LEN]) + b"".join(hashes)
                    + blob_versioned_hash)
    return (int.from_bytes(digest, "big") % BLS_MODULUS).to_bytes(32, "big")


def batch_data_hash(chunk_data_hashes: Sequence[bytes]) -> bytes:
    """keccak256 of the chunks' data hashes (da-codec computeBatchDataHash, codecs v0..v4)."""
    return keccak(b"".join(chunk_data_hashes))


def build_header(*, version: int, batch_index: int, l1_message_popped: int,
                 total_l1_message_popped: int, chunk_data_hashes: Sequence[bytes],
                 parent_batch_hash: str, last_block_timestamp: int,
                 payload: bytes) -> BatchHeader:
    """The header da-codec NewDABatch makes for a batch whose blob payload is `payload`:
    data hash, blob versioned hash, z and y computed here (the devnet's, and the tests')."""
    blob = canonical_blob(payload)
    vhash = versioned_hash(blob)
    z = challenge_point(batch_bytes_of(payload, version), vhash)
    return BatchHeader(
        version=version, batch_index=batch_index, l1_message_popped=l1_message_popped,
        total_l1_message_popped=total_l1_message_popped,
        data_hash=_hex(batch_data_hash(chunk_data_hashes)), blob_versioned_hash=_hex(vhash),
        parent_batch_hash=parent_batch_hash, last_block_timestamp=last_block_timestamp,
        blob_data_proof=(_hex(z), _hex(evaluate(blob, z))))


# -- what the chunk proofs attest --------------------------------------------------------------

def chunk_data_hash(proof: AggProof) -> bytes | None:
    """The data hash a chunk proof attests (instance bytes 104..136, roller_prover.h), or
    None if its instance is not a chunk instance of this prover's layout."""
    if len(proof.instance) != CHUNK_INSTANCE_LEN:
        return None
    return proof.instance[104:136]


def included_l1_messages(proof: AggProof) -> int | None:
    """The L1 messages a codec v1+ chunk proof includes, from its instance's byte length
    (roller_prover.h: len = 104 + 58 blocks + 32 included L1 messages + 32, bound by the chunk
    circuit), or None if the instance does not fit that layout (a mock proof's does not)."""
    if len(proof.instance) != CHUNK_INSTANCE_LEN:
        return None
    length = int.from_bytes(proof.instance[200:208], "big")
    blocks = int.from_bytes(proof.instance[208:216], "big")
    rest = length - 104 - 58 * blocks - 32
    if blocks < 1 or length > MAX_CHUNK_INSTANCE_BYTES or rest < 0 or rest % 32:
        return None
    return rest // 32


# -- the check --------------------------------------------------------------------------------

def check_batch_header(header: BatchHeader, payload: bytes, *, codec: int,
                       chunk_proofs: Sequence[AggProof],
                       chunk_info_hashes: Sequence[str] | None = None,
                       path: str = "task_data") -> None:
    """Refuse (WireFormatError naming the key path under `path`) a header that disagrees
    with the task: the module's list, in that order. `codec`: the codec of the fork the task
    is proved under; `chunk_info_hashes`: the data hashes the task's chunk infos name (None
    or empty: it names none)."""
    hp = join(path, "batch_header")
    if header.version != codec:
        raise WireFormatError(join(hp, "version"), f"codec {header.version}, the task's "
                              f"fork commits with codec {codec}")
    hashes = _chunk_hashes(chunk_proofs, chunk_info_hashes, path)
    expected = batch_data_hash(hashes)
    if _b32(header.data_hash) != expected:
        raise WireFormatError(join(hp, "data_hash"), f"{header.data_hash} differs from the "
                              f"chunk proofs' batch data hash {_hex(expected)} (keccak256 "
                              f"of their {len(hashes)} chunk data hashes)")
    included = sum(n for n in map(included_l1_messages, chunk_proofs) if n is not None)
    if header.l1_message_popped < included:
        raise WireFormatError(join(hp, "l1_message_popped"), f"{header.l1_message_popped}, "
                              f"fewer than the {included} L1 messages the chunk proofs "
                              "include")
    if header.total_l1_message_popped < header.l1_message_popped:
        raise WireFormatError(join(hp, "total_l1_message_popped"),
                              f"{header.total_l1_message_popped}, less than the batch's own "
                              f"l1_message_popped {header.l1_message_popped}")
    bp = join(path, "blob_bytes")
    blob = canonical_blob(payload, bp)
    vhash = versioned_hash(blob)
    if _b32(header.blob_versioned_hash) != vhash:
        raise WireFormatError(join(hp, "blob_versioned_hash"),
                              f"{header.blob_versioned_hash} differs from the blob's "
                              f"{_hex(vhash)} (KZG commitment of {bp})")
    batch_bytes = batch_bytes_of(payload, header.version, bp)
    chunks = chunk_payloads(batch_bytes, bp)
    if len(chunks) != len(chunk_proofs):
        raise WireFormatError(bp, f"the blob holds {len(chunks)} chunks, the task has "
                              f"{len(chunk_proofs)} chunk proofs")
    z = challenge_point(batch_bytes, vhash, bp)
    if header.z != z:
        raise WireFormatError(join(hp, "blob_data_proof[0]"), f"z {header.blob_data_proof[0]}"
                              f" differs from the blob's challenge point {_hex(z)}")
    y = evaluate(blob, z)
    if header.y != y:
        raise WireFormatError(join(hp, "blob_data_proof[1]"), f"y {header.blob_data_proof[1]}"
                              f" differs from the blob polynomial at z, {_hex(y)}")


def _chunk_hashes(proofs: Sequence[AggProof], infos: Sequence[str] | None,
                  path: str) -> list[bytes]:
    """The chunks' data hashes: each proof's own; the chunk info's where the proof is not of
    this prover's layout; a chunk info naming another than its proof's is refused."""
    ip = join(path, "chunk_infos")
    if infos and len(infos) != len(proofs):
        raise WireFormatError(ip, f"{len(infos)} chunk infos for {len(proofs)} chunk proofs")
    out = []
    for i, proof in enumerate(proofs):
        attested = chunk_data_hash(proof)
        named = infos[i] if infos else None
        if attested is not None and named is not None and attested != _b32(named):
            raise WireFormatError(f"{ip}[{i}].data_hash", f"{named} differs from the data "
                                  f"hash chunk proof {i} attests, {_hex(attested)}")
        found = attested if attested is not None else _b32(named) if named else None
        if found is None:
            raise WireFormatError(f"{path}.chunk_proofs[{i}]", "no data hash: its instance "
                                  "is not a chunk instance and no chunk info names one")
        out.append(found)
    return out


def check_batch_task(task: TaskMsg, fork: str) -> BatchHeader | None:
    """Check an HTTP batch task's ``batch_header`` against its chunk proofs and
    ``blob_bytes`` (`check_batch_header`), before it is proved under `fork`. Returns the
    header, or None when there is none to check (not an HTTP batch task; ``null`` header:
    codec v0..v2, or a coordinator before H3). WireFormatError naming the key path when the
    task must not be proved; RollerError when the KZG setup cannot be loaded."""
    if task.type != ProveType.AGGREGATOR or not task.http_task:
        return None
    path = "task_data"
    data = object_members(from_task_msg(task).data_json(), path,
                          ("batch_header", "blob_bytes", "chunk_infos"))
    if data.get("batch_header") is None:
        return None
    header = BatchHeader.from_json(data["batch_header"], join(path, "batch_header"))
    payload = decode_bytes(data.get("blob_bytes"), join(path, "blob_bytes"))
    if not payload:
        raise WireFormatError(join(path, "blob_bytes"), "missing: a codec v3/v4 batch header comes "
                      "with its blob payload")
    infos = []
    for p, info in decode_list(data.get("chunk_infos"), join(path, "chunk_infos")):
        m = object_members(info, p, ("data_hash",))
        infos.append(parse_hash(m.get("data_hash"), join(p, "data_hash")))
    check_batch_header(header, payload, codec=CODEC_OF[canonical(fork, "fork")],
                       chunk_proofs=task.sub_proofs, chunk_info_hashes=infos, path=path)
    return header
