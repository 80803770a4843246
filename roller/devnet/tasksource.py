"""Tasks of the devnet: chunk tasks cut from a trace chain, batch tasks from verified chunks.

A `TaskRecord` is also the ledger entry tests read: every dispatch (to whom), every
submission (status, error, verdict or rejection text) and the task's state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from roller.devnet.chainforks import ChainForks
from roller.devnet.traces import TraceIndex
from roller.forks import PRE_FORK
from roller.protocol.messages import AggProof, ProveType, TaskMsg, WsVariant

BASIC = 0
AGGREGATOR = 1
BUNDLE = 2  # HTTP H3+ only: a bundle over batch proofs (ProveType.BUNDLE)

# Task states (spec 3.5 proving status names, in-memory).
UNASSIGNED, ASSIGNED, PROVED, VERIFIED, FAILED = (
    "unassigned", "assigned", "proved", "verified", "failed",
)


def _hash_of_ids(ids: list[str]) -> str:
    return "0x" + keccak(b"".join(bytes.fromhex(i[2:]) for i in ids)).hex()


@dataclass
class TaskRecord:
    """A task, its lifecycle state and its ledger."""

    id: str
    type: int
    block_hashes: tuple[str, ...] = ()
    sub_proofs: tuple[AggProof, ...] = ()
    source: str = "pushed"
    chain: int | None = None
    block_numbers: tuple[int, ...] = ()
    state: str = UNASSIGNED
    pinned_pk: str | None = None  # a re-queue aimed at one roller (Devnet.requeue)
    fork: str = PRE_FORK  # the hard fork of its first block (roller.devnet.chainforks)
    proof: AggProof | None = None
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    def task_msg(self, variant: WsVariant = WsVariant.WS_2023_06) -> dict[str, Any]:
        """The notification's TaskMsg JSON, with `variant`'s wire type number."""
        msg = TaskMsg(
            id=self.id,
            type=ProveType(self.type),
            block_hashes=self.block_hashes,
            sub_proofs=self.sub_proofs,
        )
        return msg.to_json(variant)

    def ledger(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "chain": self.chain,
            "block_hashes": list(self.block_hashes),
            "block_numbers": list(self.block_numbers),
            "fork": self.fork,
            "sub_proof_count": len(self.sub_proofs),
            "state": self.state,
            "dispatch_count": len(self.dispatches),
            "dispatches": self.dispatches,
            "submissions": self.submissions,
            "created_at": self.created_at,
        }


def chunk_tasks(index: TraceIndex, chunk_size: int,
                forks: ChainForks | None = None) -> list[TaskRecord]:
    """Cut every contiguous chain of served traces into chunks of `chunk_size` blocks.

    Chains break where a block's parentHash is not the previous block's hash, and at every
    hard fork boundary of `forks` (Scroll's chunk proposer never spans one; a chunk's fork
    is its blocks'). The task id is keccak256 of the chunk's block hashes concatenated (a
    66-char 0x id, like the block-batch hashes real basic tasks carry).
    """
    forks = forks or ChainForks()
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    chains: list[list[Any]] = []
    for entry in index.ordered():
        if chains and chains[-1][-1].hash == entry.parent_hash:
            chains[-1].append(entry)
        else:
            chains.append([entry])
    tasks: list[TaskRecord] = []
    for chain_no, chain in enumerate(chains):
        runs: list[list[Any]] = []  # the chain cut at fork boundaries
        for entry in chain:
            fork = forks.fork_at(entry.number, entry.timestamp)
            if runs and forks.fork_at(runs[-1][-1].number, runs[-1][-1].timestamp) == fork:
                runs[-1].append(entry)
            else:
                runs.append([entry])
        for run in runs:
            fork = forks.fork_at(run[0].number, run[0].timestamp)
            for start in range(0, len(run), chunk_size):
                blocks = run[start : start + chunk_size]
                hashes = [b.hash for b in blocks]
                tasks.append(
                    TaskRecord(
                        id=_hash_of_ids(hashes),
                        type=BASIC,
                        block_hashes=tuple(hashes),
                        source="chunk",
                        chain=chain_no,
                        block_numbers=tuple(b.number for b in blocks),
                        fork=fork,
                    )
                )
    return tasks


class TaskBook:
    """All tasks in creation order; builds one batch task per chain once its chunks verify."""

    def __init__(self, batch: bool = False) -> None:
        self.batch = batch
        self.tasks: dict[str, TaskRecord] = {}
        # (chain, fork): a chain that crosses a fork gets one batch per fork, as Scroll's
        # batch proposer cuts at the boundary.
        self._batched: set[tuple[int, str]] = set()

    def add(self, task: TaskRecord) -> TaskRecord:
        if task.id in self.tasks:
            raise ValueError(f"task {task.id} already exists")
        self.tasks[task.id] = task
        return task

    def get(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def unassigned(self, task_type: int) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.type == task_type and t.state == UNASSIGNED]

    def on_verified(self, task: TaskRecord) -> TaskRecord | None:
        """The batch task for `task`'s chain when all its chunks are verified (once)."""
        if not self.batch or task.source != "chunk" or task.chain is None:
            return None
        group = (task.chain, task.fork)
        chunks = [t for t in self.tasks.values() if t.source == "chunk"
                  and (t.chain, t.fork) == group]
        if group in self._batched or any(t.state != VERIFIED for t in chunks):
            return None
        self._batched.add(group)
        proofs = tuple(t.proof for t in chunks if t.proof is not None)
        return self.add(
            TaskRecord(
                id=_hash_of_ids([t.id for t in chunks]),
                type=AGGREGATOR,
                sub_proofs=proofs,
                source="batch",
                chain=task.chain,
                block_numbers=tuple(n for t in chunks for n in t.block_numbers),
                fork=task.fork,
            )
        )

    def ledger(self) -> list[dict[str, Any]]:
        return [t.ledger() for t in self.tasks.values()]
