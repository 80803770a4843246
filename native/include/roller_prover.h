/*
 * roller_prover: chunk, batch and bundle proofs for the roller (plonky2, Poseidon over Goldilocks).
 * ABI version 4 (prover_abi_version()): forks (every init, prove and verify call names its fork;
 * prover_forks, get_vk). ABI 3: bundle entry points; one error convention (below).
 * All strings are NUL-terminated UTF-8.
 *
 * Forks
 * - The library knows every Scroll hard fork and holds one set of circuits per fork, as Scroll's
 *   prover proves each task with the circuits of the task's hard_fork_name. Forks, in chain order,
 *   with their da-codec codec version: homestead (before Bernoulli, codec v0), bernoulli (v1),
 *   curie (v2), darwin (v3), darwinV2 (v4) (scroll-tech/da-codec encoding/da.go GetHardforkName,
 *   GetCodecVersion). prover_forks() lists them.
 * - Every `fork` argument is a fork name, case-insensitive ("darwinV2", "darwinv2"); NULL or an
 *   unknown name is an error (`unknown fork "x"; known forks: homestead, bernoulli, curie, darwin,
 *   darwinV2`).
 * - Each fork's circuits differ, so each fork has its own verifying keys: the chunk circuit hashes
 *   the fork's tag (1 homestead .. 5 darwinV2) into its commitment; the wrap circuits verify that
 *   fork's chunk circuits; a batch circuit accepts only chunk proofs under its fork's wrap keys, a
 *   bundle circuit only its fork's batch proofs. Proving or verifying with fork X's circuits a proof
 *   of fork Y is refused, naming Y when Y is initialised in the process ("a chunk proof of fork
 *   homestead, not of fork darwinV2: ...").
 * - Several forks can be initialised in one process at once: each init_* sets up one role (chunk
 *   prover, ...) for one fork, and a prove or verify call with a fork needs that fork's init of
 *   that role; otherwise it fails naming the fork ("chunk prover of fork curie not initialised
 *   (initialised for: homestead, darwinV2)").
 * - Circuits live under <params_dir>/<fork>/roller_prover_v3/ (fork's canonical name).
 *
 * Conventions
 * - Every function catches Rust panics; none unwinds into the caller. A panic while a registry
 *   lock is held does not poison later calls (the registries are recovered).
 * - One error convention for every function: a call returns its failure value when it fails
 *   (init_*: non-zero; functions returning char*: NULL; verify_*: 0) and prover_last_error()
 *   then gives the message, per calling thread; every call clears that message first, so after a
 *   success it is "". Panics are failures like any other ("prover panic: ..."). (Before ABI
 *   version 3 the char* functions returned {"error": "<message>"} instead of NULL.)
 * - Functions returning char* return, on success, a newly allocated string that the caller must
 *   release with free_c_chars(): an AggProof JSON object (below), the chunk info JSON, the forks
 *   JSON or a key in base64.
 * - init_* return 0 on success. prover_abi_version, prover_last_error and free_c_chars cannot
 *   fail and leave the last error as it is.
 *   Calling an init again (same or another params dir) is harmless: the last call wins, per fork.
 *   The first init of a fork over a params dir builds its circuits (~20 s on 2 cores, ~1 GB of
 *   files under <params_dir>/<fork>/roller_prover_v3/); later inits and other processes reload
 *   them. A batch circuit (per chunk count) and a bundle circuit (per sequence of batch sizes;
 *   seconds and 35-75 MB per batch it holds) are built on their first use there and cached the
 *   same way.
 * - verify_* return 1 for a valid proof OF THE GIVEN TASK and 0 otherwise (invalid, another
 *   task's or fork's, malformed, or not initialised); prover_last_error() says why, naming
 *   the first instance field that differs from the task ("instance field data_hash differs from
 *   the task: proof 0x.., task 0x..").
 * - Functions are thread-safe; proving uses all cores (rayon).
 * - chain_id arguments: 0 = not given. The chain id is the traces' chainID and/or the caller's
 *   (task or configuration); they must agree, one must exist. The environment is never read.
 *
 * What a proof attests (and what it does not)
 * - EVM execution is NOT proved. A chunk proof attests knowledge of committed bytes b (header |
 *   the fork's data-hash preimage | codec v1+: tx bytes hash) and hashes per block h_j with the
 *   public inputs below; nothing about whether the blocks' transactions lead from prev to post
 *   state root.
 * - Bound by the chunk circuit: chain id and the three roots are b[0..104]; the Poseidon
 *   commitment is over [fork tag, len, b, zero padding, h_0 .. h_{B-1}] with every byte
 *   range-checked; len <= capacity and every byte at or after len is zero; block_count >= 1,
 *   h_j < 2^16, h_j = 0 for j >= block_count, h_j <= the tx count in block context j, and
 *   len = 104 + 58 block_count + 32 (h_0 + ... + h_{B-1}) + (codec v1+: 32). h_j is the number of
 *   32-byte hashes block j puts in the data-hash preimage (codec v0: its L1 messages included
 *   plus its L2 transactions; v1+: its L1 messages included): a witness of its own, not the
 *   context's tx count, which counts the L1 messages a block skips too.
 * - NOT bound by the circuit: data hash and public input hash are free witnesses (32-bit limbs);
 *   nothing in-circuit ties the data hash to b (no keccak in-circuit).
 * - Bound by the verifier against the task (verify_chunk_proof's chunk_info_json, from
 *   block_traces_to_chunk_info of the task's traces with the same fork): chain id,
 *   prev/post/withdraw roots, data hash, public input hash, block count (instance and AggProof),
 *   and when given commitment and len - so a proof only verifies for a task whose recomputed
 *   bytes are exactly b. Codec v0: the pi hash is recomputed from the instance; codec v1+: it
 *   also covers the tx bytes hash, which the instance does not carry, so the chunk info must give
 *   tx_bytes_hash or public_input_hash (verify_chunk_proof fails without either). The proof must
 *   verify against the bucket's wrap key of the fork.
 * - Batch circuit: every chunk proof verifies recursively under one of the fork's wrap keys;
 *   chunks chain (post root i = prev root i+1) on one chain id; the total block count is summed
 *   in-circuit; the commitment is Poseidon over all chunk public inputs. Batch verifier: chunk
 *   count, chain id, first prev root, last post and withdraw roots, total block count, each
 *   chunk's data hash in order, and (when the infos carry commitment, len and, for codec v1+,
 *   public_input_hash or tx_bytes_hash) the batch commitment recomputed from the task's chunk
 *   infos, which binds every chunk field including its block count and pi hash.
 * - Bundle circuit (the batch rules, one level up): one circuit per sequence of batch sizes
 *   (chunk counts, in chain order); every batch proof verifies recursively under the constant key
 *   of the fork's batch circuit for its size, and its chunk count is re-asserted; batches chain
 *   (post root i = prev root i+1) on one chain id; the total block count is summed in-circuit; the
 *   commitment is Poseidon over all batch public inputs. Bundle verifier: batch count, the
 *   circuit for the task's batch sizes, chain id, first prev root, last post and withdraw
 *   roots, total block count, each batch's commitment in order, and the bundle commitment
 *   recomputed from the task's batch infos (every batch public input: roots, counts, each
 *   chunk's data hash). At most 64 batches per bundle proof; more is an error, never a prefix.
 *
 * AggProof JSON (coordinator-protocol.md 3.4): {"proof": b64, "instance": b64, "final_pair": b64,
 * "vk": b64, "block_count": n}, padded standard base64.
 *
 * vk (32 bytes): the fork's key of the proof type, what get_vk returns (ABI 4; before, the digest
 *   of the one circuit that proved it). Chunk: keccak256("roller_prover chunk key" | the circuit
 *   digests of the fork's six wrap circuits, bucket order, 4 x u64 BE each). Batch:
 *   keccak256("roller_prover batch key" | "roller_prover_v3" | chunk key): the fork's batch
 *   circuits, one per chunk count, each built deterministically over the fork's wrap keys. Bundle:
 *   keccak256("roller_prover bundle key" | "roller_prover_v3" | batch key). Which circuit of the
 *   fork proved it is the frame's param (below); verification uses that circuit's own key.
 *
 * proof: "RLRP" | kind u16 BE (0 chunk, 1 batch, 2 bundle) | param u16 BE (chunk: bucket index;
 *   batch: chunk count; bundle: batch count) | payload length u64 BE | plonky2 ProofWithPublicInputs bytes | zero padding to a
 *   multiple of 32 bytes.
 *
 * Chunk instance (216 bytes, big-endian; Scroll chunk info, coordinator-protocol.md section 10;
 * the same layout for every fork):
 *     0  chain id (u64)
 *     8  prev state root       (storageTrace.rootBefore of the first block)
 *    40  post state root       (header.stateRoot of the last block)
 *    72  withdraw root         (withdraw_trie_root / withdrawTrieRoot of the last block)
 *   104  data hash             (da-codec's chunk hash under the fork's codec: keccak256 of, per
 *                              block, number u64 | timestamp u64 | base fee u256
 *                              (header.baseFeePerGas, 0 if absent) | gas limit u64 | tx count u16
 *                              (L1 messages popped, skipped ones included, + L2 transactions),
 *                              then per block its included L1 message hashes and, codec v0 only,
 *                              its L2 transaction hashes; codec v1+ hashes no L2 transaction)
 *   136  public input hash     (codec v0: keccak256(chain id u64 | prev | post | withdraw | data
 *                              hash); codec v1+: keccak256(chain id u64 | prev | post | withdraw |
 *                              data hash | tx bytes hash), tx bytes hash = keccak256 of the
 *                              chunk's L2 transactions' signed encodings (EIP-2718 envelopes),
 *                              concatenated (scroll-tech/zkevm-circuits aggregator ChunkInfo))
 *   168  Poseidon commitment   (4 Goldilocks elements as u64) computed in-circuit over
 *                              [fork tag, len, b_0, ..., b_{len-1}, 0, ..., 0, h_0, ..., h_{B-1}]
 *                              (one element per byte, zero padded to the bucket capacity
 *                              768 << bucket, smallest bucket that fits; then the hashes per block,
 *                              zero padded to B = (capacity - 104) / 58 blocks),
 *                              b = chain id u64 | prev | post | withdraw | data-hash preimage |
 *                              codec v1+: tx bytes hash
 *   200  len (u64)             byte length of b
 *   208  block count (u64)     = AggProof block_count
 *   final_pair (64 bytes) = public input hash | Poseidon commitment.
 *   Traces must be consecutive (number + 1, rootBefore = previous stateRoot). Blocks that exceed
 *   the largest bucket (24576 bytes) are an error naming the counts and bytes, never a proof of
 *   a prefix. Codec v1+ rebuilds each L2 transaction's signed encoding from the trace's fields
 *   (legacy, EIP-2930, EIP-1559) and refuses the chunk, naming the transaction, when it does not
 *   hash to the trace's txHash.
 *
 * Batch instance (152 + 32 n bytes, big-endian):
 *     0  chain id (u64)        8 prev state root of chunk 0     40 post state root of chunk n-1
 *    72  withdraw root of chunk n-1
 *   104  Poseidon commitment over the public inputs of all n chunk proofs (4 x u64)
 *   136  n (u64)
 *   144  total block count (u64, summed in-circuit) = AggProof block_count
 *   152  data hash of chunk i at 152 + 32 i
 *   final_pair (64 bytes) = keccak256(chain id | prev | post | withdraw | batch data hash)
 *                           | Poseidon commitment; batch data hash = keccak256(data hashes), as
 *                           da-codec's for codecs v0..v4.
 *
 * Bundle instance (152 + 32 k bytes, big-endian):
 *     0  chain id (u64)        8 prev state root of batch 0     40 post state root of batch k-1
 *    72  withdraw root of batch k-1
 *   104  Poseidon commitment over the public inputs of all k batch proofs (4 x u64)
 *   136  k (u64)
 *   144  total block count (u64, summed in-circuit) = AggProof block_count
 *   152  Poseidon commitment of batch i (its instance bytes 104..136) at 152 + 32 i
 *   final_pair (64 bytes) = keccak256(chain id | prev | post | withdraw | keccak256(batch
 *                           commitments)) | Poseidon commitment.
 *
 * Batch info JSON (verify_bundle_proof's task input, one per batch of the task; what the task's
 *   verified batch proof attests, decoded from its instance): {chain_id, prev_state_root,
 *   post_state_root, withdraw_root, commitment (instance 104..136), chunk_count, block_count,
 *   data_hashes: [one per chunk]} (hashes as 0x hex).
 *
 * Chunk info JSON (block_traces_to_chunk_info; the verifiers' task input): {fork, codec_version,
 *   chain_id, prev_state_root, post_state_root, withdraw_root, data_hash, tx_bytes_hash,
 *   public_input_hash, commitment, len, block_count, tx_count, num_l1_messages,
 *   l1_messages_popped_before, l1_messages_popped_after} (hashes as 0x hex; tx_bytes_hash null
 *   for codec v0; commitment null when over every bucket).
 *   The verifiers need chain_id, the three roots, data_hash and block_count, and for codec v1+
 *   tx_bytes_hash or public_input_hash (a chunk info decoded from a verified chunk proof's
 *   instance gives public_input_hash = instance 136..168); commitment and len are compared when
 *   present; fork, when present, must be the verifier's; public_input_hash, when present with
 *   what recomputes it, must agree. num_l1_messages: per block, last L1 queue index - popped + 1
 *   (Scroll's NumL1Messages, skipped messages included, an error below 0 or over u16, never
 *   wrapped); each block context's tx count is that plus the block's L2 transactions (Scroll's
 *   numTransactions, in the data hash). Popped before the chunk = the argument (>= 0; in a batch
 *   the previous chunk's l1_messages_popped_after), else the first trace's startL1QueueIndex; an
 *   error when it disagrees with a trace's startL1QueueIndex, or is unknown and the chunk has an
 *   L1 message. A chunk without L1 messages whose count is unknown (none given, none in its
 *   traces) reports l1_messages_popped_before and l1_messages_popped_after as null (unknown), not
 *   0: a caller must not carry a guessed 0 into the next chunk.
 */
#ifndef ROLLER_PROVER_H
#define ROLLER_PROVER_H

/* What prover_abi_version() returns for this header; a caller refuses a library that returns
 * another (roller/ffi reads this header for its cffi declarations and this number). */
#define ROLLER_PROVER_ABI_VERSION 4

#ifdef __cplusplus
extern "C" {
#endif

unsigned int prover_abi_version(void);

/* JSON array of the known fork names, canonical spelling, chain order:
 * ["homestead","bernoulli","curie","darwin","darwinV2"]. */
char *prover_forks(void);

/* Base64 (32 bytes) of fork's key for proof_type (0 chunk, 1 batch, 2 bundle): the `vk` field of
 * that fork's proofs of that type, what a roller presents at the coordinator login. An error when
 * neither that fork's prover nor its verifier of that type is initialised. */
char *get_vk(unsigned int proof_type, const char *fork);

int init_chunk_prover(const char *params_dir, const char *fork);
/* traces_json: JSON array of BlockTrace, sorted by header.number. chain_id: 0 = the traces'. */
char *gen_chunk_proof(const char *traces_json, unsigned long long chain_id, const char *fork);

int init_batch_prover(const char *params_dir, const char *fork);
/* chunk_proofs_json: JSON array of chunk AggProof objects of the fork. Put in chain order by their
 * roots when given in another order; an error naming the break when no unique chain order exists. */
char *gen_batch_proof(const char *chunk_proofs_json, const char *fork);

int init_chunk_verifier(const char *params_dir, const char *fork);
/* chunk_info_json: the task's chunk info (block_traces_to_chunk_info of the task's traces, same
 * fork). */
char verify_chunk_proof(const char *proof_json, const char *chunk_info_json, const char *fork);

int init_batch_verifier(const char *params_dir, const char *fork);
/* chunk_infos_json: JSON array of the task's chunk infos, in chain order. */
char verify_batch_proof(const char *proof_json, const char *chunk_infos_json, const char *fork);

int init_bundle_prover(const char *params_dir, const char *fork);
/* batch_proofs_json: JSON array of batch AggProof objects of the fork (Scroll's bundle task
 * batch_proofs), ordered by their roots like gen_batch_proof's chunk proofs. */
char *gen_bundle_proof(const char *batch_proofs_json, const char *fork);

int init_bundle_verifier(const char *params_dir, const char *fork);
/* batch_infos_json: JSON array of the task's batch infos, in chain order. */
char verify_bundle_proof(const char *proof_json, const char *batch_infos_json, const char *fork);

/* Chunk info without proving (Scroll's libzkp name) under the fork's codec; no ordering checks.
 * chain_id: 0 = the traces'; l1_messages_popped_before: < 0 = derived (above). Returns the chunk
 * info JSON, or NULL (message in prover_last_error()). */
char *block_traces_to_chunk_info(const char *traces_json, unsigned long long chain_id,
                                 long long l1_messages_popped_before, const char *fork);

/* Message of the calling thread's last call if it failed, else "" (never NULL; free it). */
char *prover_last_error(void);

void free_c_chars(char *ptr);

#ifdef __cplusplus
}
#endif

#endif /* ROLLER_PROVER_H */
