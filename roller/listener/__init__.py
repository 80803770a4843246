"""The listener: one coordinator session per slot, tasks recorded in Redis and sent to Celery.

Its parts, in the order a notification passes them: `slot_session` (a slot's coordinator
session on its own thread), `dispatcher` (record, then enqueue, or answer at once),
`queue_room` (whether a slot's shared GPU queue has room for one more task), `reconcile`
(the sweep that applies roller.lifecycle's policies to every live record), `submitter` (the
outbox delivered to the coordinator), `process` (the `Listener`: every slot, recovery at
start, the stop) and `cli` (`python -m roller.listener`).
"""

from roller.listener.cli import main
from roller.listener.dispatcher import Dispatcher
from roller.listener.process import Listener
from roller.listener.queue_room import room_on_queue
from roller.listener.slot_session import SlotSession, reconnect_delay

__all__ = ["Dispatcher", "Listener", "SlotSession", "main", "reconnect_delay", "room_on_queue"]
