"""Hard forks: Scroll's fork names, the codec each one commits with, and the fork a task names.

A fork is a generation of Scroll's circuits and data rules, switched on at a block (Bernoulli,
Curie) or a timestamp (Darwin, DarwinV2) of the L2 chain (scroll-tech/scroll
`common/forks/forks.go`, `GetHardforkName`). Scroll's prover holds two generations at once,
keyed by fork name, and proves each task with the circuits of the fork the task names; so
does this roller: the config names the forks a host holds (`prover.forks`), the prover
library knows every fork (each fork's circuits give their own verifying key), and a task of
a fork the host does not hold is answered at once with a deterministic failure naming it.

The fork a task names, by coordinator generation: the 2023 WebSocket generations and HTTP
H1 predate forks (homestead, codec v0); H2 v4.4.10+ and H3 answer `hard_fork_name` (empty on
H2's single-circuit path: the fork the login named); H4 puts the prover's lowercase spelling
in the task data (`fork_name`). Names are matched case-insensitively (Scroll writes
`darwinV2` in configs and `darwinv2` in task data) and kept in Scroll's spelling.

Failure model: an unknown fork name is a ConfigError (config) or WireFormatError (a task)
naming the field and the known forks; a task whose fork cannot be read names no fork and is
proved under the login's or the host's first fork, as before forks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from roller.errors import ConfigError, ForkNotHeld, WireFormatError

# Scroll's fork names in chain order, with the da-codec version each one's batches use
# (da-codec `encoding.CodecFromConfig`). Euclid (codec v6/v7, OpenVM) is not held here.
CODEC_OF: dict[str, int] = {
    "homestead": 0,
    "bernoulli": 1,
    "curie": 2,
    "darwin": 3,
    "darwinV2": 4,
}
FORKS: tuple[str, ...] = tuple(CODEC_OF)
# What a task of the pre-fork generations is proved under.
PRE_FORK = "homestead"
_BY_LOWER = {name.lower(): name for name in FORKS}


def canonical(name: str, field: str) -> str:
    """Scroll's spelling of fork `name`; WireFormatError naming `field` if unknown."""
    found = _BY_LOWER.get(name.strip().lower())
    if found is None:
        raise WireFormatError(field, f"unknown hard fork {name!r} (known: "
                              f"{', '.join(FORKS)})")
    return found


def config_fork(name: str, key: str) -> str:
    """`canonical` for the config: ConfigError naming the key path."""
    try:
        return canonical(name, key)
    except WireFormatError as exc:
        raise ConfigError(f"{key}: {exc.reason}") from exc


@dataclass(frozen=True)
class TaskFork:
    """The fork a task names, as the coordinator wrote it (`named`: empty if none) and in
    Scroll's spelling (`name`: empty if none, or unknown to this roller)."""

    named: str
    name: str

    @property
    def known(self) -> bool:
        return bool(self.name) or not self.named


def task_fork(http_task: str) -> TaskFork:
    """The fork a recorded task names (`TaskMsg.http_task`: the get_task answer; empty for
    the WebSocket generations, which name none and prove homestead's rules)."""
    if not http_task:
        return TaskFork(PRE_FORK, PRE_FORK)
    try:
        answer = json.loads(http_task)
    except ValueError:
        return TaskFork("", "")
    if not isinstance(answer, dict):
        return TaskFork("", "")
    named = answer.get("hard_fork_name")
    if not (isinstance(named, str) and named):
        named = _data_fork(answer.get("task_data"))
    if answer.get("generation") == "http-h1" and not named:
        return TaskFork(PRE_FORK, PRE_FORK)
    found = _BY_LOWER.get(named.strip().lower(), "") if named else ""
    return TaskFork(named, found)


def _data_fork(task_data: object) -> str:
    """H4's `fork_name` in the task data, else ""."""
    if not isinstance(task_data, str):
        return ""
    try:
        data = json.loads(task_data)
    except ValueError:
        return ""
    name = data.get("fork_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


def fork_to_prove(http_task: str, held: Sequence[str], login_fork: str = "") -> str:
    """The held fork to prove a task under: the one it names; a task that names none (H2's
    single-circuit path, an answer without the field) is proved under the fork the login
    named (`coordinator.hard_fork_name`) if held, else the newest held (what an H2 login
    names then, roller.coordinator_session). ForkNotHeld if the
    task names a fork this host does not hold (or one this roller does not know)."""
    fork = task_fork(http_task)
    if not fork.named:
        login = _BY_LOWER.get(login_fork.strip().lower(), "")
        return login if login in held else held[-1]
    if fork.name not in held:
        raise ForkNotHeld(fork.name or fork.named, tuple(held))
    return fork.name
