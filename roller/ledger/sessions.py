"""The slot's coordinator session as `roller status` sees it, its registrations (`epoch`,
which tells a new assignment from a duplicate), and fenced GPU queues.

Failure model: these are reports and one counter; a Redis error reaches the caller, which
logs it and goes on (the session itself does not depend on them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from roller.ledger.keyspace import PREFIX, LedgerBase


class Sessions(LedgerBase):
    """Each slot's session hash and each GPU queue's fence."""

    def next_epoch(self, slot: str) -> int:
        """A new registration of the slot: tasks it notifies are new assignments."""
        return int(self.r.hincrby(f"{PREFIX}session:{slot}", "epoch", 1))

    def set_session(self, slot: str, state: str, *, generation: str | None = None,
                    token_expires: float | None = None) -> None:
        """The slot's session state for `roller status`; a registration also names the
        protocol generation and, for the HTTP ones, when the login token expires."""
        key = f"{PREFIX}session:{slot}"
        pipe = self.r.pipeline()
        fields: dict[str, str | float] = {"state": state, "since": time.time()}
        if generation is not None:
            fields.update(generation=generation, token_expires=token_expires or 0)
        pipe.hset(key, mapping=fields)
        if state == "registered":
            pipe.hincrby(key, "registrations", 1)
        pipe.execute()

    def touch_session(self, slot: str, now: float | None = None,
                      token_expires: float | None = None) -> None:
        """The listener's heartbeat for the slot: a `registered` state whose heartbeat is
        old belongs to a listener that is gone. It carries the login token's expiry, which
        a re-login moves."""
        fields: dict[str, float] = {"seen": now or time.time()}
        if token_expires is not None:
            fields["token_expires"] = token_expires
        self.r.hset(f"{PREFIX}session:{slot}", mapping=fields)

    def session(self, slot: str) -> dict[str, str]:
        return dict(self.r.hgetall(f"{PREFIX}session:{slot}"))

    # -- fenced GPU queues: a worker whose GPU failed tells the listener ------------------

    def fence(self, queue: str, reason: str) -> None:
        """`queue`'s GPU is unusable (its worker stopped consuming): its slots stop asking
        for work until a worker of the queue starts on a healthy GPU (`unfence`)."""
        self.r.set(f"{PREFIX}fenced:{queue}", reason)

    def unfence(self, queues: Iterable[str]) -> None:
        keys = [f"{PREFIX}fenced:{q}" for q in queues]
        if keys:
            self.r.delete(*keys)

    def fenced(self, queue: str) -> str | None:
        """Why `queue`'s GPU is fenced, or None."""
        reason = self.r.get(f"{PREFIX}fenced:{queue}")
        return None if reason is None else str(reason)

