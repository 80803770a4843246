"""Security checks of the fault suite: keystore permissions, JSON-only job messages."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from faultlib import FaultCluster

from roller.broker import waiting_messages
from roller.errors import KeystoreError
from roller.keys import load_or_create_keystore
from roller.localrun import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults_smoke]


def test_keystores_are_0600_and_world_readable_is_refused(fc: FaultCluster,
                                                          tmp_path: Path) -> None:
    cfg = json.loads(fc.c.config.read_text())
    for slot in cfg["slots"]:
        assert stat.S_IMODE(Path(slot["keystore_path"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(fc.c.config.stat().st_mode) == 0o600
    loose = tmp_path / "keystore.json"
    shutil.copy(cfg["slots"][0]["keystore_path"], loose)
    loose.chmod(0o644)
    with pytest.raises(KeystoreError, match="unsafe mode 0644"):
        load_or_create_keystore(loose, cfg["keystore_password"])
    # The listener refuses to start with it (exit 2, the path named, no secret printed).
    cfg["slots"] = [dict(cfg["slots"][0], keystore_path=str(loose))]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    config.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "roller.listener", "--config", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ROLLER_CONFIG=str(config)))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unsafe mode 0644" in proc.stderr
    assert cfg["keystore_password"] not in proc.stderr + proc.stdout


class _Payload:
    """Runs a shell command when unpickled: what a pickle-accepting worker would execute."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_pickled_job_message_is_rejected(fc: FaultCluster, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    sender = Celery("pickle-sender", broker=fc.c.redis.url)
    sender.conf.task_serializer = "pickle"
    queue = fc.queues[0]
    worker = fc.worker(queue)
    sent = sender.send_task("roller.prove", args=(_Payload(marker), "x"), queue=queue,
                            serializer="pickle")
    sender.close()
    # Celery's own refusal (no roller counter sees a message that never became a job).
    wait_for(lambda: "Refusing to deserialize untrusted content" in worker.output(), 60,
             "the worker to refuse the pickled message")
    # Acknowledged and gone: decoding is over, a payload would have run by now.
    wait_for(lambda: sent.id not in waiting_messages(fc.ledger.r, queue), 60,
             "the refused message to leave the broker")
    assert not marker.exists()
    assert worker.alive()
    # The queue is still served: a normal task is proved and accepted.
    task_id = fc.push()
    fc.wait_final([task_id])
