"""A task's life and the policies that act on it, each written once, in the order a task
lives: `events` (what happens to it and to its slot's session, for observers such as the
metrics), `budget` (at an assignment and at an attempt: prove it, or answer without
proving), `failures` (the class of a failure answer), `liveness` (is anything still working
on it in flight?) and `window` (may it still be answered?).

The ledger (roller.ledger) owns the states and their transitions; these policies decide when
a record moves. The listener's dispatcher, reconciler and submitter and the worker's job
call them where they apply.
"""

from roller.lifecycle.budget import Budget
from roller.lifecycle.events import Observers
from roller.lifecycle.liveness import (
    LEASE_RENEW_SECONDS,
    LEASE_SECONDS,
    LIVENESS_GRACE_SECONDS,
    SEND_GRACE_SECONDS,
    Liveness,
    Verdict,
    judge,
)
from roller.lifecycle.window import WINDOW_PASSED, Window

__all__ = ["LEASE_RENEW_SECONDS", "LEASE_SECONDS", "LIVENESS_GRACE_SECONDS",
           "SEND_GRACE_SECONDS", "WINDOW_PASSED", "Budget", "Liveness", "Observers", "Verdict",
           "Window", "judge"]
