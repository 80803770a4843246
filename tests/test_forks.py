"""Hard forks (roller.forks): Scroll's names, the fork a task names in each coordinator
generation, the held fork a task is proved under, the config's `prover.forks`, and the mock
prover's circuits per fork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roller.config import parse_config
from roller.errors import ConfigError, ForkNotHeld, ProverError, WireFormatError
from roller.ffi.mock import MockProver
from roller.forks import CODEC_OF, FORKS, PRE_FORK, canonical, fork_to_prove, task_fork
from roller.protocol.http_enums import Generation
from roller.protocol.http_messages import GetTaskResponse, to_task_msg

BLOCK = "0x" + "11" * 32
BASE = {"roller_name": "r", "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": "ws://127.0.0.1:9/", "trace_endpoint": "http://127.0.0.1:9/"}


def http_task(generation: Generation, fork: str = "", data_fork: str | None = None) -> str:
    """The recorded `http_task` of a chunk task as the listener keeps it."""
    data: dict[str, object] = {"block_hashes": [BLOCK]}
    if data_fork is not None:
        data = {"fork_name": data_fork, **data}
    answer = GetTaskResponse(generation=generation, task_id="0x" + "ab" * 32, task_type=1,
                             task_data=json.dumps(data),
                             uuid="" if generation == Generation.H1 else "u-1",
                             hard_fork_name=fork)
    return to_task_msg(answer).http_task


def test_scroll_fork_names_in_chain_order_with_their_codec() -> None:
    # scroll-tech/scroll common/forks GetHardforkName; da-codec CodecFromConfig.
    assert FORKS == ("homestead", "bernoulli", "curie", "darwin", "darwinV2")
    assert [CODEC_OF[f] for f in FORKS] == [0, 1, 2, 3, 4]


def test_names_match_case_insensitively_and_keep_scroll_spelling() -> None:
    assert canonical("darwinv2", "f") == "darwinV2"
    assert canonical(" Curie ", "f") == "curie"
    with pytest.raises(WireFormatError, match="'f'.*unknown hard fork 'euclid'.*darwinV2"):
        canonical("euclid", "f")


@pytest.mark.parametrize(("generation", "named", "data_fork", "want"), [
    (Generation.H1, "", None, PRE_FORK),           # H1 predates forks
    (Generation.H2, "", None, ""),                 # the single-circuit path: names none
    (Generation.H2, "curie", None, "curie"),       # v4.4.10+
    (Generation.H3, "darwinV2", None, "darwinV2"),
    (Generation.H4, "", "darwinv2", "darwinV2"),   # the prover's spelling in task data
])
def test_the_fork_a_task_names(generation: Generation, named: str, data_fork: str | None,
                               want: str) -> None:
    assert task_fork(http_task(generation, named, data_fork)).name == want


def test_a_websocket_task_is_homestead() -> None:
    assert task_fork("").name == PRE_FORK


def test_a_task_is_proved_under_the_fork_it_names_if_held() -> None:
    held = ("darwin", "darwinV2")
    assert fork_to_prove(http_task(Generation.H3, "darwin"), held) == "darwin"
    assert fork_to_prove(http_task(Generation.H3, "darwinV2"), held) == "darwinV2"
    with pytest.raises(ForkNotHeld, match=r"hard fork curie not held by this prover "
                                          r"\(holds darwin, darwinV2\)"):
        fork_to_prove(http_task(Generation.H3, "curie"), held)
    # A fork this roller does not know is named as the coordinator wrote it.
    with pytest.raises(ForkNotHeld, match="hard fork euclidV2 not held"):
        fork_to_prove(http_task(Generation.H3, "euclidV2"), held)
    # The pre-fork generations are homestead's: a host that does not hold it refuses them.
    with pytest.raises(ForkNotHeld, match="hard fork homestead not held"):
        fork_to_prove("", held)


def test_a_task_naming_no_fork_goes_to_the_login_s_fork_else_the_newest() -> None:
    h2 = http_task(Generation.H2)
    assert fork_to_prove(h2, ("bernoulli", "curie"), login_fork="Bernoulli") == "bernoulli"
    assert fork_to_prove(h2, ("bernoulli", "curie")) == "curie"
    assert fork_to_prove(h2, (PRE_FORK,)) == PRE_FORK


def test_the_config_names_the_held_forks() -> None:
    seed = parse_config(BASE, Path("/cfg"), env={})
    assert [(f.name, f.params_path) for f in seed.prover.forks] == [(PRE_FORK,
                                                                     Path("/cfg/params"))]
    two = parse_config({**BASE, "prover": {"params_path": "p", "forks": [
        {"name": "DarwinV2"}, {"name": "darwin", "params_path": "/staged/darwin"}]}},
        Path("/cfg"), env={})
    assert two.prover.fork_names == ("darwin", "darwinV2")  # chain order
    assert two.prover.fork("darwin").params_path == Path("/staged/darwin")  # type: ignore[union-attr]
    assert two.prover.fork("darwinV2").params_path == Path("/cfg/p")  # type: ignore[union-attr]


@pytest.mark.parametrize(("forks", "error"), [
    ([{"name": "euclid"}], r"prover.forks\[0\].name: unknown hard fork 'euclid'"),
    ([{"name": "darwin"}, {"name": "Darwin"}], r"prover.forks\[1\].name: fork darwin is held "
                                                r"twice"),
    ([{"nam": "darwin"}], r"prover.forks\[0\].nam: unknown key; did you mean 'name'\?"),
    ([], "prover.forks: expected a non-empty list"),
])
def test_a_bad_forks_list_is_refused_naming_the_key(forks: list[object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config({**BASE, "prover": {"forks": forks}}, Path("/cfg"), env={})


def test_the_seed_abi_proves_homestead_only() -> None:
    with pytest.raises(ConfigError, match="the seed ABI proves homestead only"):
        parse_config({**BASE, "prover": {"abi": "seed", "forks": [{"name": "curie"}]}},
                     Path("/cfg"), env={})


def test_each_fork_s_mock_circuits_have_their_own_verifying_key() -> None:
    prover = MockProver()
    darwin = prover.gen_chunk_proof(json.dumps([{}]), fork="darwin")
    v2 = prover.gen_chunk_proof(json.dumps([{}]), fork="darwinV2")
    assert prover.vk(0, "darwin") != prover.vk(0, "darwinV2")
    assert json.loads(darwin)["vk"] == prover.vk(0, "darwin")
    assert prover.verify_chunk_proof(darwin, fork="darwin")
    assert not prover.verify_chunk_proof(darwin, fork="darwinV2")
    assert prover.forks == ["darwin", "darwinV2"]
    # A batch of one fork takes only its own fork's chunk proofs.
    with pytest.raises(ProverError, match="chunk proof 0 invalid .not a darwinV2 proof"):
        prover.gen_batch_proof(json.dumps([darwin]), fork="darwinV2")
    assert prover.verify_batch_proof(prover.gen_batch_proof(json.dumps([v2]), fork="darwinV2"),
                                     fork="darwinV2")
