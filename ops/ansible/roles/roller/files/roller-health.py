"""Health of one roller host after a (re)start, for upgrade.yml and operators.

Run through roller-exec (it sets ROLLER_CONFIG and the secrets):
    roller-exec /opt/roller/venv/bin/python roller-health.py --node NODE [--since EPOCH]

Healthy when, for every slot of the config: worker `<queue>@NODE` answers ping, consumes its
queue and (with --since) started after EPOCH; and the slot's coordinator session is
`registered` in Redis (roller:session:{slot}), since EPOCH when given. Polls until healthy
or --timeout; exit 0 healthy, 1 not. Prints one key=value line per check, no secrets.
"""

from __future__ import annotations

import argparse
import sys
import time

from roller.celery_app import app
from roller.config import load_config
from roller.ledger import TaskLedger


def check(node: str, since: float | None) -> list[str]:
    cfg = load_config()
    ledger = TaskLedger.from_url(cfg.broker_url)
    queues = {f"{slot.queue}@{node}": slot.queue for slot in cfg.slots}
    workers = sorted(queues)
    inspect = app.control.inspect(destination=workers, timeout=5)
    pongs = {name for reply in app.control.ping(destination=workers, timeout=5) for name in reply}
    consuming = inspect.active_queues() or {}
    stats = inspect.stats() or {}
    now = time.time()
    problems = []
    for worker in workers:
        names = {q.get("name") for q in consuming.get(worker, [])}
        uptime = stats.get(worker, {}).get("uptime")
        ok = worker in pongs and queues[worker] in names
        if since is not None:
            ok = ok and uptime is not None and now - uptime >= since - 2
        print(f"worker={worker} ping={worker in pongs} queues={','.join(sorted(names))} "
              f"uptime_s={uptime} ok={ok}")
        if not ok:
            problems.append(worker)
    for slot in cfg.slots:
        session = ledger.session(slot.name)
        state = session.get("state", "")
        since_ok = since is None or float(session.get("since", 0)) >= since
        ok = state == "registered" and since_ok
        print(f"slot={slot.name} session={state or 'none'} "
              f"registrations={session.get('registrations', 0)} ok={ok}")
        if not ok:
            problems.append(slot.name)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="worker node name (gpuK@NODE)")
    parser.add_argument("--since", type=float, help="processes must have (re)started after")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while True:
        problems = check(args.node, args.since)
        if not problems:
            print("healthy")
            return 0
        if time.monotonic() > deadline:
            print(f"unhealthy: {' '.join(problems)}")
            return 1
        time.sleep(3)


if __name__ == "__main__":
    sys.exit(main())
