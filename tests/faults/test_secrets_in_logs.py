"""No secret in any log line the suite's clusters wrote.

Order-independent: the test runs one task of its own through the shared cluster (token,
signed registration, proving, a signed submission: every path that handles a secret), then
reads every log of every cluster the session has started so far. Alone it checks its own
task's logs; after other faults (`make faults` runs files in order) it checks theirs too.

Secrets: each slot's private key (decrypted from its keystore), the keystore password, and
coordinator tokens (32 hex digits from the devnet; the roller's own logs must never show one).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eth_account import Account
from faultlib import LOG_DIRS, FaultCluster

pytestmark = [pytest.mark.e2e, pytest.mark.faults_smoke]

# Bare 32 hex digits (subscription ids look alike but carry 0x).
TOKEN_RE = re.compile(r"(?<![0-9a-fA-Fx])[0-9a-f]{32}(?![0-9a-fA-F])")


def test_no_secret_in_any_log(fc: FaultCluster) -> None:
    task_id = fc.push()
    fc.wait_final([task_id])
    rec = fc.rec(task_id)
    assert rec is not None and rec.outcome == "accepted"
    assert LOG_DIRS, "the cluster fixture registers its log directory"
    checked = 0
    for workdir in LOG_DIRS:
        cfg = json.loads((workdir / "config.json").read_text())
        password = cfg["keystore_password"]
        secrets = [password]
        for slot in cfg["slots"]:
            key = Account.decrypt(json.loads(Path(slot["keystore_path"]).read_text()), password)
            secrets += [key.hex().lower(), key.hex().upper()]
        for log in sorted(workdir.rglob("*.log")):
            text = log.read_text(errors="replace")
            checked += len(text.splitlines())
            for secret in secrets:
                assert secret not in text, f"a secret is in {log}"
            if log.name.startswith(("listener", "worker")):
                tokens = TOKEN_RE.findall(text)
                assert not tokens, f"token-like value in {log}: {tokens[:3]}"
    assert checked > 0
