/*
 * roller_prover: chunk, batch and bundle proofs for the roller (plonky2, Poseidon over Goldilocks).
 * ABI version 3 (prover_abi_version()): bundle entry points; one error convention (below).
 * All strings are NUL-terminated UTF-8.
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
 *   release with free_c_chars(): an AggProof JSON object (below), or the chunk info JSON.
 * - init_* return 0 on success. prover_abi_version, prover_last_error and free_c_chars cannot
 *   fail and leave the last error as it is.
 *   Calling an init again (same or another params dir) is harmless: the last call wins.
 *   The first init over a params dir builds the circuits (~20 s on 2 cores, ~1 GB of files under
 *   <params_dir>/roller_prover_v2/); later inits and other processes reload them. A batch
 *   circuit (per chunk count) and a bundle circuit (per sequence of batch sizes; seconds and
 *   35-75 MB per batch it holds) are built on their first use there and cached the same way.
 * - verify_* return 1 for a valid proof OF THE GIVEN TASK and 0 otherwise (invalid, another
 *   task's, malformed, or not initialised); prover_last_error() says why, naming
 *   the first instance field that differs from the task ("instance field data_hash differs from
 *   the task: proof 0x.., task 0x..").
 * - Functions are thread-safe; proving uses all cores (rayon).
 * - chain_id arguments: 0 = not given. The chain id is the traces' chainID and/or the caller's
 *   (task or configuration); they must agree, one must exist. The environment is never read.
 *
 * What a proof attests (and what it does not)
 * - EVM execution is NOT proved. A chunk proof attests knowledge of committed bytes b (header |
 *   Scroll codec v0 data-hash preimage) with the public inputs below; nothing about whether the
 *   blocks' transactions lead from prev to post state root.
 * - Bound by the chunk circuit: chain id and the three roots are b[0..104]; the Poseidon
 *   commitment is over [len, b, zero padding] with every byte range-checked; len <= capacity and
 *   every byte at or after len is zero; block_count >= 1 and len = 104 + 58 block_count + 32 T,
 *   T = tx counts read from the first block_count block contexts in b.
 * - NOT bound by the circuit: data hash and public input hash are free witnesses (32-bit limbs);
 *   nothing in-circuit ties the data hash to b (no keccak in-circuit).
 * - Bound by the verifier against the task (verify_chunk_proof's chunk_info_json, from
 *   block_traces_to_chunk_info of the task's traces): chain id, prev/post/withdraw roots, data
 *   hash, block count (instance and AggProof), and when given commitment and len - so a proof
 *   only verifies for a task whose recomputed bytes are exactly b. It also checks the pi hash is
 *   keccak of the instance fields and the proof verifies against the bucket's wrap key.
 * - Batch circuit: every chunk proof verifies recursively under one of the wrap keys; chunks chain
 *   (post root i = prev root i+1) on one chain id; the total block count is summed in-circuit;
 *   the commitment is Poseidon over all chunk public inputs. Batch verifier: chunk count, chain
 *   id, first prev root, last post and withdraw roots, total block count, each chunk's data hash
 *   in order, and (when the infos carry commitment and len) the batch commitment recomputed from
 *   the task's chunk infos, which binds every chunk field including its block count.
 * - Bundle circuit (the batch rules, one level up): one circuit per sequence of batch sizes
 *   (chunk counts, in chain order); every batch proof verifies recursively under the constant key
 *   of the batch circuit for its size, and its chunk count is re-asserted; batches chain (post
 *   root i = prev root i+1) on one chain id; the total block count is summed in-circuit; the
 *   commitment is Poseidon over all batch public inputs. Bundle verifier: batch count, the key of
 *   the circuit for the task's batch sizes, chain id, first prev root, last post and withdraw
 *   roots, total block count, each batch's commitment in order, and the bundle commitment
 *   recomputed from the task's batch infos (every batch public input: roots, counts, each
 *   chunk's data hash). At most 64 batches per bundle proof; more is an error, never a prefix.
 *
 * AggProof JSON (coordinator-protocol.md 3.4): {"proof": b64, "instance": b64, "final_pair": b64,
 * "vk": b64, "block_count": n}, padded standard base64.
 *
 * proof: "RLRP" | kind u16 BE (0 chunk, 1 batch, 2 bundle) | param u16 BE (chunk: bucket index;
 *   batch: chunk count; bundle: batch count) | payload length u64 BE | plonky2 ProofWithPublicInputs bytes | zero padding to a
 *   multiple of 32 bytes.
 *
 * Chunk instance (216 bytes, big-endian; Scroll chunk info, coordinator-protocol.md section 10):
 *     0  chain id (u64)
 *     8  prev state root       (storageTrace.rootBefore of the first block)
 *    40  post state root       (header.stateRoot of the last block)
 *    72  withdraw root         (withdraw_trie_root / withdrawTrieRoot of the last block)
 *   104  data hash             (keccak256 of Scroll's codec v0 chunk data: per block number u64 |
 *                              timestamp u64 | base fee u256 (header.baseFeePerGas, 0 if absent) |
 *                              gas limit u64 | tx count u16, then per block its L1 message hashes
 *                              and its other tx hashes)
 *   136  public input hash     (keccak256(chain id u64 | prev | post | withdraw | data hash))
 *   168  Poseidon commitment   (4 Goldilocks elements as u64) computed in-circuit over
 *                              [len, b_0, ..., b_{len-1}, 0, ..., 0] (one element per byte, zero
 *                              padded to the bucket capacity 768 << bucket, smallest bucket that
 *                              fits), b = chain id u64 | prev | post | withdraw | data-hash preimage
 *   200  len (u64)             byte length of b
 *   208  block count (u64)     = AggProof block_count
 *   final_pair (64 bytes) = public input hash | Poseidon commitment.
 *   vk (32 bytes) = circuit digest of the bucket's wrap circuit (4 x u64 BE).
 *   Traces must be consecutive (number + 1, rootBefore = previous stateRoot). Blocks that exceed
 *   the largest bucket (24576 bytes) are an error naming the counts and bytes, never a proof of
 *   a prefix.
 *
 * Batch instance (152 + 32 n bytes, big-endian):
 *     0  chain id (u64)        8 prev state root of chunk 0     40 post state root of chunk n-1
 *    72  withdraw root of chunk n-1
 *   104  Poseidon commitment over the public inputs of all n chunk proofs (4 x u64)
 *   136  n (u64)
 *   144  total block count (u64, summed in-circuit) = AggProof block_count
 *   152  data hash of chunk i at 152 + 32 i
 *   final_pair (64 bytes) = keccak256(chain id | prev | post | withdraw | keccak256(data hashes))
 *                           | Poseidon commitment.
 *   vk (32 bytes) = circuit digest of the batch circuit for n chunks.
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
 *   vk (32 bytes) = circuit digest of the bundle circuit for these batch sizes.
 *
 * Batch info JSON (verify_bundle_proof's task input, one per batch of the task; what the task's
 *   verified batch proof attests, decoded from its instance): {chain_id, prev_state_root,
 *   post_state_root, withdraw_root, commitment (instance 104..136), chunk_count, block_count,
 *   data_hashes: [one per chunk]} (hashes as 0x hex).
 *
 * Chunk info JSON (block_traces_to_chunk_info; the verifiers' task input): {chain_id,
 *   prev_state_root, post_state_root, withdraw_root, data_hash, public_input_hash, commitment,
 *   len, block_count, tx_count, num_l1_messages, l1_messages_popped_before,
 *   l1_messages_popped_after} (hashes as 0x hex; commitment null when over every bucket).
 *   The verifiers need chain_id, the three roots, data_hash and block_count; commitment and len
 *   are compared when present. num_l1_messages: per block, last L1 queue index - popped + 1
 *   (Scroll's NumL1Messages, skipped messages included, an error below 0 or over u16, never
 *   wrapped); each block context's tx count is that plus the block's L2 transactions (Scroll's
 *   numTransactions, in the data hash). Popped before the chunk = the argument (>= 0; in a batch
 *   the previous chunk's l1_messages_popped_after), else the first trace's startL1QueueIndex; an
 *   error when it disagrees with a trace's startL1QueueIndex, or is unknown and the chunk has an
 *   L1 message (0 for a chunk without any).
 */
#ifndef ROLLER_PROVER_H
#define ROLLER_PROVER_H

/* What prover_abi_version() returns for this header; a caller refuses a library that returns
 * another (roller/ffi reads this header for its cffi declarations and this number). */
#define ROLLER_PROVER_ABI_VERSION 3

#ifdef __cplusplus
extern "C" {
#endif

unsigned int prover_abi_version(void);

int init_chunk_prover(const char *params_dir);
/* traces_json: JSON array of BlockTrace, sorted by header.number. chain_id: 0 = the traces'. */
char *gen_chunk_proof(const char *traces_json, unsigned long long chain_id);

int init_batch_prover(const char *params_dir);
/* chunk_proofs_json: JSON array of chunk AggProof objects. Put in chain order by their roots
 * when given in another order; an error naming the break when no unique chain order exists. */
char *gen_batch_proof(const char *chunk_proofs_json);

int init_chunk_verifier(const char *params_dir);
/* chunk_info_json: the task's chunk info (block_traces_to_chunk_info of the task's traces). */
char verify_chunk_proof(const char *proof_json, const char *chunk_info_json);

int init_batch_verifier(const char *params_dir);
/* chunk_infos_json: JSON array of the task's chunk infos, in chain order. */
char verify_batch_proof(const char *proof_json, const char *chunk_infos_json);

int init_bundle_prover(const char *params_dir);
/* batch_proofs_json: JSON array of batch AggProof objects (Scroll's bundle task batch_proofs),
 * ordered by their roots like gen_batch_proof's chunk proofs. */
char *gen_bundle_proof(const char *batch_proofs_json);

int init_bundle_verifier(const char *params_dir);
/* batch_infos_json: JSON array of the task's batch infos, in chain order. */
char verify_bundle_proof(const char *proof_json, const char *batch_infos_json);

/* Chunk info without proving (Scroll's libzkp name); no ordering checks. chain_id: 0 = the
 * traces'; l1_messages_popped_before: < 0 = derived (above). Returns the chunk info JSON, or
 * NULL (message in prover_last_error()). */
char *block_traces_to_chunk_info(const char *traces_json, unsigned long long chain_id,
                                 long long l1_messages_popped_before);

/* Message of the calling thread's last call if it failed, else "" (never NULL; free it). */
char *prover_last_error(void);

void free_c_chars(char *ptr);

#ifdef __cplusplus
}
#endif

#endif /* ROLLER_PROVER_H */
