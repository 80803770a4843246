import json
import logging
from pathlib import Path

import pytest

from roller.config import load_config, parse_config
from roller.errors import ConfigError

SEED = {
    "roller_name": "my_roller",
    "keystore_path": "keystore.json",
    "keystore_password": "roller-pwd",
    "coordinator_url": "ws://localhost:8391",
    "trace_endpoint": "http://127.0.0.1:8545",
    "db_path": "bbolt_db",
    "prover": {"params_path": "params", "seed_path": "seed", "prove_type": 0, "dump_dir": "dump"},
}


def test_seed_config_is_one_slot_on_gpu0(tmp_path: Path) -> None:
    cfg = parse_config(SEED, tmp_path, env={})
    assert len(cfg.slots) == 1
    slot = cfg.slots[0]
    assert (slot.name, slot.queue, slot.gpu, slot.prove_type) == ("my_roller", "gpu0", 0, 0)
    assert slot.keystore_path == tmp_path / "keystore.json"
    assert cfg.prover.dump_dir == tmp_path / "dump"
    assert cfg.db_path == tmp_path / "bbolt_db"
    assert cfg.session_window_minutes == 180


def test_gpus_shorthand(tmp_path: Path) -> None:
    cfg = parse_config({**SEED, "gpus": [0, 1]}, tmp_path, env={})
    assert [(s.name, s.queue, s.keystore_path.name) for s in cfg.slots] == [
        ("my_roller-gpu0", "gpu0", "keystore-gpu0.json"),
        ("my_roller-gpu1", "gpu1", "keystore-gpu1.json"),
    ]


def test_identities_per_gpu_share_the_gpu_queue_and_keep_the_first_keys(tmp_path: Path
                                                                       ) -> None:
    cfg = parse_config({**SEED, "gpus": [0, 1], "identities_per_gpu": 2}, tmp_path, env={})
    assert [(s.name, s.queue, s.gpu, s.keystore_path.name) for s in cfg.slots] == [
        ("my_roller-gpu0", "gpu0", 0, "keystore-gpu0.json"),
        ("my_roller-gpu0-id1", "gpu0", 0, "keystore-gpu0-id1.json"),
        ("my_roller-gpu1", "gpu1", 1, "keystore-gpu1.json"),
        ("my_roller-gpu1-id1", "gpu1", 1, "keystore-gpu1-id1.json"),
    ]
    seed = parse_config({**SEED, "identities_per_gpu": 3}, tmp_path, env={})
    assert [(s.name, s.queue, s.keystore_path.name) for s in seed.slots] == [
        ("my_roller", "gpu0", "keystore.json"), ("my_roller-id1", "gpu0", "keystore-id1.json"),
        ("my_roller-id2", "gpu0", "keystore-id2.json")]
    slots = [{"name": "b", "queue": "q", "gpu": 2, "prove_type": 1, "keystore_path": "b.key"}]
    explicit = parse_config({**SEED, "slots": slots, "identities_per_gpu": 2}, tmp_path, env={})
    assert [(s.name, s.queue, s.gpu, s.prove_type, s.keystore_path.name)
            for s in explicit.slots] == [("b", "q", 2, 1, "b.key"), ("b-id1", "q", 2, 1,
                                                                    "b-id1.key")]
    with pytest.raises(ConfigError, match="identities_per_gpu: expected an integer >= 1"):
        parse_config({**SEED, "identities_per_gpu": 0}, tmp_path, env={})


def test_explicit_slots_and_batch_type(tmp_path: Path) -> None:
    slots = [{"name": "a", "queue": "gpu0", "gpu": 0, "keystore_path": "a.json"},
             {"name": "b", "queue": "gpu1", "gpu": 1, "prove_type": 1, "keystore_path": "b.json"}]
    cfg = parse_config({**SEED, "slots": slots}, tmp_path, env={})
    assert [s.prove_type for s in cfg.slots] == [0, 1]
    assert cfg.slot("b").queue == "gpu1"


def test_env_overrides_secrets(tmp_path: Path) -> None:
    cfg = parse_config(SEED, tmp_path, env={"ROLLER_KEYSTORE_PASSWORD": "from-env",
                                            "ROLLER_BROKER_PASSWORD": "p@ss"})
    assert cfg.keystore_password == "from-env"
    assert cfg.broker_url == "redis://:p%40ss@127.0.0.1:6379/0"
    assert "from-env" not in repr(cfg)


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"roller_name": 5}, "roller_name"),
        ({"coordinator_url": "ftp://x"}, "coordinator_url"),
        ({"coordinator": {"protocol": "http-h3"}}, "coordinator_url"),
        ({"coordinator": {"protocol": "http-h9"}}, "coordinator.protocol"),
        ({"coordinator": {"poll_intervall_seconds": 1}}, "coordinator.poll_intervall_seconds"),
        ({"coordinator_url": "http://x", "coordinator": {"protocol": "ws-2023-06"}},
         "coordinator_url"),
        ({"coordinator_url": "http://x", "coordinator": {"protocol": "http-h3",
                                                         "hard_fork_name": "darwin"}},
         "coordinator.hard_fork_name"),
        ({"coordinator_url": "http://x", "coordinator": {"vks": "mock_vk"}}, "coordinator.vks"),
        ({"coordinator_url": "http://x", "coordinator": {"provider_type": 3}},
         "coordinator.provider_type"),
        ({"prover": {"prove_type": 7}}, "prover.prove_type"),
        ({"gpus": [0, -1]}, "gpus[1]"),
        ({"slots": [{"name": "a", "queue": "gpu0"}]}, "slots[0].keystore_path"),
        ({"retry": {"max_prove_attempts": 0}}, "retry.max_prove_attempts"),
        ({"retry": {"trace_budget_seconds": 0}}, "retry.trace_budget_seconds"),
        ({"retry": {"trace_retries": "3"}}, "retry.trace_retries"),
        ({"session_window_minutes": "x"}, "session_window_minutes"),
    ],
)
def test_errors_name_the_key_path(tmp_path: Path, patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**SEED, **patch}, tmp_path, env={})
    assert str(info.value).startswith(f"{path}:")


def test_coordinator_protocol_defaults_follow_the_url(tmp_path: Path) -> None:
    ws = parse_config(SEED, tmp_path, env={})
    assert ws.coordinator.protocol == "ws-2023-06" and not ws.coordinator.http
    http = parse_config({**SEED, "coordinator_url": "https://c.example/"}, tmp_path, env={})
    assert http.coordinator.protocol == "auto" and http.coordinator.http
    h3 = parse_config({**SEED, "coordinator_url": "http://127.0.0.1:8390",
                       "coordinator": {"protocol": "http-h3", "prover_version": "v4.4.43-x",
                                       "vks": ["mock_vk"], "poll_interval_seconds": 2}},
                      tmp_path, env={})
    c = h3.coordinator
    assert (c.protocol, c.prover_version, c.vks, c.poll_interval_seconds) == (
        "http-h3", "v4.4.43-x", ("mock_vk",), 2.0)


def test_coordinator_protocol_typo_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'http-h3'"):
        parse_config({**SEED, "coordinator_url": "http://x",
                      "coordinator": {"protocol": "http-3"}}, tmp_path, env={})


def test_duplicate_identity_refused(tmp_path: Path) -> None:
    slots = [{"name": "a", "queue": "gpu0", "keystore_path": "k.json"},
             {"name": "b", "queue": "gpu1", "keystore_path": "k.json"}]
    with pytest.raises(ConfigError, match="duplicate keystore_path"):
        parse_config({**SEED, "slots": slots}, tmp_path, env={})


def test_load_config_reports_bad_json(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text("{")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(f)
    f.write_text(json.dumps(SEED))
    assert load_config(f).roller_name == "my_roller"


def test_every_config_in_the_readme_loads(tmp_path: Path) -> None:
    import json
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```json\n(.*?)```", readme, re.S) if "roller_name" in b]
    assert len(blocks) >= 2
    for block in blocks:
        parse_config(json.loads(block), tmp_path, env={})


def test_trace_retries_is_deprecated_loaded_and_ignored_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 31: trace retries are bounded by `retry.trace_budget_seconds` alone; an old
    config that sets `retry.trace_retries` loads unchanged and is told once."""
    with caplog.at_level(logging.WARNING, logger="roller.config.load"):
        old = parse_config({**SEED, "retry": {"trace_retries": 6}}, tmp_path, env={})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ['deprecated config key ignored key=retry.trace_retries '
                        'reason="trace fetches retry for retry.trace_budget_seconds, '
                        'not a count"']
    assert old.retry == parse_config(SEED, tmp_path, env={}).retry
    assert not hasattr(old.retry, "trace_retries")
    assert old.retry.trace_budget_seconds == 300


def test_a_config_without_trace_retries_loads_silently(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="roller.config.load"):
        cfg = parse_config({**SEED, "retry": {"trace_budget_seconds": 20}}, tmp_path, env={})
    assert cfg.retry.trace_budget_seconds == 20 and caplog.records == []
