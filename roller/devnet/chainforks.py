"""The devnet chain's hard forks, as Scroll's chain config names them: Bernoulli and Curie
switch on at a block number, Darwin and DarwinV2 at a block timestamp (l2geth `params.
ChainConfig`: `bernoulliBlock`, `curieBlock`, `darwinTime`, `darwinV2Time`). A task's fork is
the fork of its first block (scroll-tech/scroll `common/forks.GetHardforkName`), and no chunk
or batch spans a boundary (Scroll's proposers cut there).

Failure model: a chain config that is not an object of non-negative integers under those
keys is a ConfigError naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roller.errors import ConfigError
from roller.forks import FORKS, PRE_FORK

_BLOCK_KEYS = (("bernoulli", "bernoulliBlock"), ("curie", "curieBlock"))
_TIME_KEYS = (("darwin", "darwinTime"), ("darwinV2", "darwinV2Time"))


@dataclass(frozen=True)
class ChainForks:
    """Each fork's first block (Bernoulli, Curie) or first timestamp (Darwin, DarwinV2);
    None: not scheduled."""

    bernoulli_block: int | None = None
    curie_block: int | None = None
    darwin_time: int | None = None
    darwin_v2_time: int | None = None

    def fork_at(self, number: int, timestamp: int) -> str:
        """Scroll's GetHardforkName for a block."""
        def on(start: int | None, at: int) -> bool:
            return start is not None and at >= start

        if not on(self.bernoulli_block, number):
            return PRE_FORK
        if not on(self.curie_block, number):
            return "bernoulli"
        if not on(self.darwin_time, timestamp):
            return "curie"
        if not on(self.darwin_v2_time, timestamp):
            return "darwin"
        return "darwinV2"

    @classmethod
    def from_genesis(cls, fork: str) -> ChainForks:
        """A chain on `fork` (and every fork before it) from block 0."""
        upto = FORKS.index(fork)
        at = [0 if FORKS.index(name) <= upto else None
              for name in ("bernoulli", "curie", "darwin", "darwinV2")]
        return cls(*at)

    @classmethod
    def from_json(cls, value: Any, where: str = "chain config") -> ChainForks:
        """From l2geth's chain config object (or a genesis holding one under `config`)."""
        if isinstance(value, dict) and isinstance(value.get("config"), dict):
            value, where = value["config"], f"{where}.config"
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        found: dict[str, int | None] = {}
        for fork, key in (*_BLOCK_KEYS, *_TIME_KEYS):
            raw = value.get(key)
            if raw is not None and (not isinstance(raw, int) or isinstance(raw, bool)
                                    or raw < 0):
                raise ConfigError(f"{where}.{key}: expected a non-negative integer, "
                                  f"got {raw!r}")
            found[fork] = raw
        return cls(found["bernoulli"], found["curie"], found["darwin"], found["darwinV2"])

    @classmethod
    def from_file(cls, path: Path) -> ChainForks:
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"chain config {path}: {exc}") from exc
        return cls.from_json(value, str(path))

    def to_json(self) -> dict[str, int]:
        out = {"bernoulliBlock": self.bernoulli_block, "curieBlock": self.curie_block,
               "darwinTime": self.darwin_time, "darwinV2Time": self.darwin_v2_time}
        return {k: v for k, v in out.items() if v is not None}


def default_chain_forks(protocol: str) -> ChainForks:
    """A devnet without a chain config runs its generation's era from block 0: the Darwin
    coordinators (http-h3, http-h4) darwinV2, every earlier generation homestead."""
    if protocol in ("http-h3", "http-h4"):
        return ChainForks.from_genesis("darwinV2")
    return ChainForks()
