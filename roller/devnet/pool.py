"""Token cache and roller pool of the devnet coordinator (spec 5.2, 5.3).

Everything is keyed by the compressed public key `pk`, never by name. All methods run on
the coordinator's event loop thread; nothing here locks.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TASK_CHANNEL_CAPACITY = 4


class TokenCache:
    """Per-pk tokens: TTL from creation, same token while unexpired, deleted on use."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock  # public: a test steps a running devnet's token clock
        self._tokens: dict[str, tuple[str, float]] = {}

    def _live(self, pk: str) -> str | None:
        entry = self._tokens.get(pk)
        if entry is None:
            return None
        token, created = entry
        if self.clock() - created >= self.ttl:
            del self._tokens[pk]
            return None
        return token

    def get_or_create(self, pk: str) -> str:
        token = self._live(pk)
        if token is None:
            token = secrets.token_hex(16)
            self._tokens[pk] = (token, self.clock())
        return token

    def matches(self, pk: str, token: str) -> bool:
        live = self._live(pk)
        return live is not None and live == token

    def delete(self, pk: str) -> None:
        self._tokens.pop(pk, None)

    def clear(self) -> None:
        self._tokens.clear()


@dataclass
class RollerNode:
    """A registered roller: identity, assigned task ids and its task channel (capacity 4)."""

    pk: str
    name: str
    roller_type: int
    version: str
    task_ids: set[str]
    registered_at: float = field(default_factory=time.time)
    channel: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(TASK_CHANNEL_CAPACITY)
    )

    def is_idle_for(self, task_type: int) -> bool:
        return not self.task_ids and self.roller_type == task_type

    def info(self) -> dict[str, Any]:
        return {
            "pk": self.pk,
            "name": self.name,
            "roller_type": self.roller_type,
            "version": self.version,
            "task_ids": sorted(self.task_ids),
            "registered_at": self.registered_at,
        }


class RollerPool:
    """pk -> RollerNode of live registrations."""

    def __init__(self) -> None:
        self.nodes: dict[str, RollerNode] = {}

    def get(self, pk: str) -> RollerNode | None:
        return self.nodes.get(pk)

    def add(self, node: RollerNode) -> None:
        self.nodes[node.pk] = node

    def remove(self, pk: str) -> RollerNode | None:
        return self.nodes.pop(pk, None)

    def idle(self, task_type: int) -> list[RollerNode]:
        return [n for n in self.nodes.values() if n.is_idle_for(task_type)]

    def holds(self, pk: str, task_id: str) -> bool:
        node = self.nodes.get(pk)
        return node is not None and task_id in node.task_ids

    def free_task(self, pk: str, task_id: str) -> None:
        node = self.nodes.get(pk)
        if node is not None:
            node.task_ids.discard(task_id)

    def clear(self) -> None:
        self.nodes.clear()
