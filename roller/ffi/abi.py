"""cffi declarations (ABI mode) of the prover libraries the roller can load."""

# native/include/roller_prover.h, ABI version 3 (verifiers take the task's chunk info; the chain
# id is passed in, never read from the environment; version 3 adds bundles).
ROLLER_CDEF = """
unsigned int prover_abi_version(void);
int init_chunk_prover(const char *params_dir);
char *gen_chunk_proof(const char *traces_json, unsigned long long chain_id);
int init_batch_prover(const char *params_dir);
char *gen_batch_proof(const char *chunk_proofs_json);
int init_chunk_verifier(const char *params_dir);
char verify_chunk_proof(const char *proof_json, const char *chunk_info_json);
int init_batch_verifier(const char *params_dir);
char verify_batch_proof(const char *proof_json, const char *chunk_infos_json);
int init_bundle_prover(const char *params_dir);
char *gen_bundle_proof(const char *batch_proofs_json);
int init_bundle_verifier(const char *params_dir);
char verify_bundle_proof(const char *proof_json, const char *batch_infos_json);
char *block_traces_to_chunk_info(const char *traces_json, unsigned long long chain_id,
                                 long long l1_messages_popped_before);
char *prover_last_error(void);
void free_c_chars(char *ptr);
"""

ROLLER_ABI_VERSION = 3
# Bytes of a chunk instance (roller_prover.h): ... | commitment | len u64 | block count u64.
CHUNK_INSTANCE_LEN = 216
# Offset of the per-chunk data hashes in a batch instance (roller_prover.h).
BATCH_DATA_HASHES = 152

# Seed-era Scroll libzkp (coordinator-protocol.md section 7). free_c_chars exists only in later
# libraries; it is looked up lazily and used when present.
SEED_CDEF = """
void init_prover(char *params_path, char *seed_path);
char *create_agg_proof_multi(char *trace);
void init_verifier(char *params_path, char *agg_vk_path);
char verify_agg_proof(char *proof);
void free_c_chars(char *ptr);
"""
