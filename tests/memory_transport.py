"""An in-memory coordinator transport pair for unit tests of CoordinatorClient.

`MemoryCoordinator.connect` is a `Connector`: each connection gets a `MemoryTransport`
(the client's end) and a `MemoryEnd` (the coordinator's end), and the coordinator's script
runs on its own thread with that end, the way a server handler would. Messages are whole
texts (no framing, no pings: what needs real socket behaviour stays on real sockets).

Failure model, as the real transport reports it: the coordinator closing its end makes the
client's ``recv`` raise ConnectionLost("closed by coordinator"); ``abort`` makes a blocked
``recv`` raise at once; a send on an aborted or closed pair raises ConnectionLost; ``recv``
returns None after ``idle_timeout`` seconds without a message. The coordinator's end sees
the client's close or abort as `ClientGone` from ``recv``. Exceptions of a script other
than ClientGone are kept in ``errors`` for the test to check.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from roller.errors import ConnectionLost

_CLOSED = object()  # end of stream marker in either direction


class ClientGone(Exception):
    """The client closed or aborted the connection (seen by the coordinator's end)."""


class MemoryTransport:
    """The client's end; implements roller.protocol.ws_transport.Transport."""

    def __init__(self, inbox: queue.Queue[object], outbox: queue.Queue[object],
                 idle_timeout: float) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self.aborted = False
        self.released = threading.Event()
        self.sent_close = False

    def send(self, text: str) -> None:
        with self._lock:
            if self.aborted:
                raise ConnectionLost("send failed: connection aborted")
            self._outbox.put(text)

    def recv(self) -> str | bytes | None:
        try:
            item = self._inbox.get(timeout=self._idle_timeout)
        except queue.Empty:
            return None
        if self.aborted:
            raise ConnectionLost("receive failed: connection aborted")
        if item is _CLOSED:
            raise ConnectionLost("closed by coordinator")
        assert isinstance(item, str | bytes)
        return item

    def send_close(self) -> None:
        self.sent_close = True

    def abort(self) -> None:
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
        self._outbox.put(_CLOSED)
        self._inbox.put(_CLOSED)  # wakes a blocked recv

    def release(self) -> None:
        self.released.set()


class MemoryEnd:
    """The coordinator's end of one connection."""

    def __init__(self, inbox: queue.Queue[object], outbox: queue.Queue[object]) -> None:
        self._inbox = inbox
        self._outbox = outbox

    def recv_text(self, timeout: float = 5.0) -> str:
        """The client's next message; ClientGone once it closed or aborted."""
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the client within {timeout}s") from None
        if item is _CLOSED:
            self._inbox.put(_CLOSED)  # stays gone for later calls
            raise ClientGone()
        assert isinstance(item, str)
        return item

    def send_text(self, text: str | bytes) -> None:
        self._outbox.put(text)

    def close(self) -> None:
        self._outbox.put(_CLOSED)

    def wait_gone(self, timeout: float = 3600.0) -> None:
        """Keep the connection open until the client goes away (bounded by `timeout`)."""
        try:
            while True:
                self.recv_text(timeout)
        except ClientGone:
            pass


Script = Callable[[MemoryEnd], None]


class MemoryCoordinator:
    """A Connector whose connections are served by ``script`` on a thread each."""

    def __init__(self) -> None:
        self.script: Script = MemoryEnd.wait_gone
        self.refuse: str | None = None  # a connect error text: refuse connections
        self.transports: list[MemoryTransport] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def connect(self, url: str, connect_timeout: float, idle_timeout: float) -> MemoryTransport:
        if self.refuse is not None:
            raise ConnectionLost(f"cannot connect to coordinator url={url}: {self.refuse}")
        to_client: queue.Queue[object] = queue.Queue()
        to_server: queue.Queue[object] = queue.Queue()
        transport = MemoryTransport(to_client, to_server, idle_timeout)
        end = MemoryEnd(to_server, to_client)
        self.transports.append(transport)
        thread = threading.Thread(target=self._serve, args=(self.script, end), daemon=True,
                                  name=f"memory-coordinator-{len(self._threads)}")
        self._threads.append(thread)
        thread.start()
        return transport

    def _serve(self, script: Script, end: MemoryEnd) -> None:
        try:
            script(end)
        except ClientGone:
            pass  # the client went away first: normal end of a script
        except BaseException as exc:  # surfaced by the test's teardown
            self.errors.append(exc)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for every script to end (they end when their client goes away)."""
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still running after {timeout}s"
