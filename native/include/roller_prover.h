/*
 * roller_prover: chunk and batch proofs for the roller (plonky2, Poseidon over Goldilocks).
 * ABI version 1 (prover_abi_version()). All strings are NUL-terminated UTF-8.
 *
 * Conventions
 * - Every function catches Rust panics; none unwinds into the caller.
 * - Functions returning char* return a newly allocated string that the caller must release with
 *   free_c_chars(): either an AggProof JSON object (below) or {"error": "<message>"}. They never
 *   return NULL.
 * - init_* return 0 on success, non-zero on failure; prover_last_error() then gives the message.
 *   Calling an init again (same or another params dir) is harmless: the last call wins.
 *   The first init over a params dir builds the circuits (~15 s on 2 cores, ~1 GB of files under
 *   <params_dir>/roller_prover_v1/); later inits and other processes reload them.
 * - verify_* return 1 for a valid proof and 0 otherwise (invalid, malformed, or not initialised);
 *   prover_last_error() says why.
 * - Functions are thread-safe; proving uses all cores (rayon).
 *
 * AggProof JSON (coordinator-protocol.md 3.4): {"proof": b64, "instance": b64, "final_pair": b64,
 * "vk": b64, "block_count": n}, padded standard base64.
 *
 * proof: "RLRP" | kind u16 BE (0 chunk, 1 batch) | param u16 BE (chunk: bucket index; batch: chunk
 *   count) | payload length u64 BE | plonky2 ProofWithPublicInputs bytes | zero padding to a
 *   multiple of 32 bytes.
 *
 * Chunk instance (208 bytes, big-endian; Scroll chunk info, coordinator-protocol.md section 10):
 *     0  chain id (u64)
 *     8  prev state root       (storageTrace.rootBefore of the first block)
 *    40  post state root       (header.stateRoot of the last block)
 *    72  withdraw root         (withdraw_trie_root / withdrawTrieRoot of the last block)
 *   104  data hash             (keccak256, 0 L1 messages popped before the chunk)
 *   136  public input hash     (keccak256(chain id u64 | prev | post | withdraw | data hash))
 *   168  Poseidon commitment   (4 Goldilocks elements as u64) computed in-circuit over
 *                              [len, b_0, ..., b_{len-1}, 0, ..., 0] (one element per byte, zero
 *                              padded to the bucket capacity 768 << bucket, smallest bucket that
 *                              fits), b = chain id u64 | prev | post | withdraw | data-hash preimage
 *   200  len (u64)             byte length of b
 *   final_pair (64 bytes) = public input hash | Poseidon commitment.
 *   vk (32 bytes) = circuit digest of the bucket's wrap circuit (4 x u64 BE).
 *   Chain id = the traces' chainID, else env ROLLER_CHAIN_ID, else 534352.
 *   Traces must be consecutive (number + 1, rootBefore = previous stateRoot). Trailing blocks that
 *   exceed the largest bucket (24576 bytes) are dropped; block_count says how many were proved.
 *
 * Batch instance (144 + 32 n bytes, big-endian):
 *     0  chain id (u64)        8 prev state root of chunk 0     40 post state root of chunk n-1
 *    72  withdraw root of chunk n-1
 *   104  Poseidon commitment over the public inputs of all n chunk proofs (4 x u64)
 *   136  n (u64)
 *   144  data hash of chunk i at 144 + 32 i
 *   final_pair (64 bytes) = keccak256(chain id | prev | post | withdraw | keccak256(data hashes))
 *                           | Poseidon commitment.
 *   vk (32 bytes) = circuit digest of the batch circuit for n chunks.
 */
#ifndef ROLLER_PROVER_H
#define ROLLER_PROVER_H

#ifdef __cplusplus
extern "C" {
#endif

unsigned int prover_abi_version(void);

int init_chunk_prover(const char *params_dir);
/* traces_json: JSON array of BlockTrace, sorted by header.number. */
char *gen_chunk_proof(const char *traces_json);

int init_batch_prover(const char *params_dir);
/* chunk_proofs_json: JSON array of chunk AggProof objects, in chain order. */
char *gen_batch_proof(const char *chunk_proofs_json);

int init_chunk_verifier(const char *params_dir);
char verify_chunk_proof(const char *proof_json);

int init_batch_verifier(const char *params_dir);
char verify_batch_proof(const char *proof_json);

/* Chunk info without proving (Scroll's libzkp name); no ordering checks. Returns JSON
 * {chain_id, prev_state_root, post_state_root, withdraw_root, data_hash, public_input_hash,
 *  commitment, block_count, tx_count, num_l1_messages} (hashes as 0x hex) or {"error": ...}. */
char *block_traces_to_chunk_info(const char *traces_json);

/* Message of the last failed init_* or verify_* call in this process. */
char *prover_last_error(void);

void free_c_chars(char *ptr);

#ifdef __cplusplus
}
#endif

#endif /* ROLLER_PROVER_H */
