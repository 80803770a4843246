"""Failure answers and their class (issue 22 item 6: a good citizen on a shared coordinator).

Every failure answer the roller makes is built here, marked with a `FailureClass` (the shared
model, roller.protocol.messages) as a stable prefix of its reason text: `[deterministic] ` or
`[transient] `. The coordinator sees only that text (the failure report's wire bytes keep
their shape); the ledger keeps the answer, and the class is read back from it.

Which class, by source:

| source                                                             | class         |
|--------------------------------------------------------------------|---------------|
| an HTTP task's data that does not decode into prover inputs        | deterministic |
| (sub-proofs in another shape, bad block hashes)                    |               |
| the prover refusing its input (`input_rejected`: malformed or      | deterministic |
| inconsistent sub-proofs or traces, block count or hashes that do   |               |
| not match, an unsupported task type, a chunk over capacity)        |               |
| the prover failing otherwise (a panic, a proof that does not       | transient     |
| verify, an unloaded prover, output that is not a proof)            |               |
| the L2 node (errors; 429 after `retry.trace_budget_seconds`;       | transient     |
| a lagging node's mismatched traces, TraceMismatch)                 |               |
| worker faults (`zk proving panic` after the attempt budget)        | transient     |
| this roller's per-task budget spent (`BUDGET_SPENT`)               | transient     |
| anything else                                                      | transient     |

What each class does: roller.lifecycle.budget (a deterministic failure is remembered for
the slot's identity and a re-assignment is answered at once with the same report, no job)
and README "Coordinator generations".

Failure model: pure functions that never raise. An unknown prover message is transient:
retrying a task that can never pass costs one attempt per assignment under
`retry.max_task_attempts`, while calling a passable task deterministic would make this
identity give it up for a day.
"""

from __future__ import annotations

import re

from roller.errors import ProverError, TraceFetchError, WireFormatError
from roller.protocol.messages import FailureClass, ProofDetail, RespStatus, TaskMsg

# The Go roller's texts (coordinator-protocol 4.3), kept after the class prefix.
TRACES_FAILED = "get traces failed"
PROVING_PANIC = "zk proving panic"
# The listener's answer to a task this roller has started `retry.max_task_attempts` times.
BUDGET_SPENT = "roller attempt budget spent"

# Prover messages that say nothing about the input: checked first, so that a panic inside a
# sub-proof check ("chunk proof 0 invalid: prover panic: ...") stays transient.
_PROVER_FAULTS = re.compile(
    r"panic|proving failed|not initialised|internal error|does not verify"
    r"|failed without a message|returned invalid JSON|cannot load|init_\w+ failed"
    r"|does not export|serialization error|truncated|cached wrap circuits"
    r"|unexpected end of JSON input|prover ABI version")
# The native prover's input checks (native/src/{prover,trace,aggproof,store}.rs) and the seed
# ABI's unsupported task types: the same input is refused the same way every time.
_INPUT_REJECTED = re.compile(
    r"\bAggProof\b|\b(chunk|batch) proofs? \d+ invalid|expected a (non-empty )?JSON array"
    r"|^empty (chunk|batch|bundle)\b|batch of 0 chunks|not in chain order|do not chain"
    r"|\bchain_id\b|differs from the task|chunk too large|exceeds every bucket"
    r"|exceeds the maximum|is not a batch size|hashes for chunk_count|of the bundle has"
    r"|traces out of order|traces not contiguous|^trace \d+:|^block \d+:"
    r"|l1 message queue index|num_l1_messages|not supported by|public input|proof bytes"
    r"|instance (too short|does not match|field)|instance of \d+ bytes|final_pair does not"
    r"|block_count does not|vk does not match|pi hash|bad hash length|chunk info JSON"
    r"|batch info JSON")


def input_rejected(message: str) -> bool:
    """Whether a prover error message is the prover refusing its input (deterministic)."""
    return not _PROVER_FAULTS.search(message) and bool(_INPUT_REJECTED.search(message))


def classify(exc: BaseException) -> FailureClass:
    """The class of the error a task failed with (the module's table). Only for errors about
    the task: a WireFormatError here is task data that is not prover input, never the
    decoding of the prover's own output (that is the prover's fault: transient)."""
    if isinstance(exc, TraceFetchError):  # a lagging node's TraceMismatch included
        return FailureClass.TRANSIENT
    if isinstance(exc, WireFormatError):
        return FailureClass.DETERMINISTIC
    if isinstance(exc, ProverError) and input_rejected(str(exc)):
        return FailureClass.DETERMINISTIC
    return FailureClass.TRANSIENT


def failure(task: TaskMsg, failure_class: FailureClass, reason: str) -> ProofDetail:
    """The failure answer to `task`, its reason marked with `failure_class` (a remembered
    report, already marked, comes out byte for byte the same)."""
    return ProofDetail(id=task.id, type=task.type, status=RespStatus.ERROR, proof=None,
                       error=failure_class.reason(reason))
