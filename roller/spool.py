"""The listener's spool: task notifications it holds because the ledger (Redis) is down.

A notification is recorded in the Redis ledger before anything acts on it. While Redis is
down the listener holds it in memory and retries every tick; this file keeps a copy of what
it holds, so a listener stopped or killed in that state loses nothing: the next listener
reads the file at start and records the tasks as soon as Redis is back. The coordinator
would not send them again (the 2023 WebSocket coordinator never re-sends an assigned task,
the HTTP ones answer "already assigned" until their timeout), so this file is the only copy.

The file is `db_path` (default `roller.db` beside the config), JSON, mode 0600, written
atomically (temporary file and rename) and removed when nothing is held. Failure model: a
file that cannot be written is logged (WARNING) and the tasks stay in memory; a file that
cannot be read at start is moved aside (`.bad`) with a WARNING naming it, never ignored in
silence.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from roller.errors import RollerError
from roller.logs import kv
from roller.protocol.messages import TaskMsg

log = logging.getLogger(__name__)


class HeldTasks:
    """One per listener, shared by its slots' threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._held: dict[str, list[TaskMsg]] = {}

    def keep(self, slot: str, tasks: list[TaskMsg]) -> None:
        """What `slot` holds now (an empty list: nothing); the file follows."""
        with self._lock:
            if not tasks and slot not in self._held:
                return
            if tasks:
                self._held[slot] = list(tasks)
            else:
                self._held.pop(slot, None)
            try:
                self._write()
            except OSError as exc:
                log.warning("cannot write the held tasks, they stay in memory only %s",
                            kv(slot=slot, path=self.path, error=exc))

    def _write(self) -> None:
        if not self._held:
            self.path.unlink(missing_ok=True)
            return
        body = {slot: [json.loads(t.dumps()) for t in tasks]
                for slot, tasks in self._held.items()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def load(self) -> dict[str, list[TaskMsg]]:
        """The tasks a previous listener held when it stopped, by slot (they are held again
        until recorded)."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read the held tasks %s", kv(path=self.path, error=exc))
            return {}
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            held = {str(slot): [TaskMsg.from_json(t) for t in tasks]
                    for slot, tasks in body.items()}
        except (ValueError, TypeError, AttributeError, RollerError) as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            os.replace(self.path, bad)
            log.warning("held tasks file unreadable, moved aside %s",
                        kv(path=bad, error=exc))
            return {}
        with self._lock:
            self._held = {slot: list(tasks) for slot, tasks in held.items() if tasks}
        return held
