"""`TaskLedger`: the ledger's parts over one Redis client, in the order a task lives.

Failure model: that of each part (roller.ledger.transitions, .records, .leases, .outbox,
.sessions, .unprovable,
.vks, .migrate); composing them adds no state and no Redis call.
"""

from __future__ import annotations

from roller.ledger.leases import Leases
from roller.ledger.migrate import Migration
from roller.ledger.outbox import Outbox
from roller.ledger.records import Records
from roller.ledger.sessions import Sessions
from roller.ledger.transitions import Transitions
from roller.ledger.unprovable import Unprovable
from roller.ledger.vks import VerifyingKeys


class TaskLedger(Transitions, Records, Leases, Outbox, Sessions, Unprovable, VerifyingKeys,
                 Migration):
    """The durable record of every task: `TaskLedger(client, retention_seconds)` or
    `TaskLedger.from_url(url, retention_seconds)` (roller.ledger.keyspace.LedgerBase)."""
