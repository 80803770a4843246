"""geth v3 keystore load-or-create (spec 6.2): round trip, permissions, no secret in logs."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_typing import HexStr

from roller.errors import KeystoreError
from roller.keys import GETH_SCRYPT_N, load_or_create_keystore

PASSWORD = "correct horse battery staple"
KEY = HexStr("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
FAST_N = 2  # scrypt work factor for tests; production files use GETH_SCRYPT_N


def write_keystore(path: Path, mode: int = 0o600) -> str:
    keyfile = Account.encrypt(KEY, PASSWORD, kdf="scrypt", iterations=FAST_N)
    path.write_text(json.dumps(keyfile))
    os.chmod(path, mode)
    return Account.from_key(KEY).address


def test_loads_file_written_by_account_encrypt(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    address = write_keystore(path)
    account = load_or_create_keystore(path, PASSWORD)
    assert account.address == address
    assert account.key.hex().removeprefix("0x") == KEY[2:]


def test_creates_geth_v3_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "key.json"
    account = load_or_create_keystore(path, PASSWORD, scrypt_n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyfile = json.loads(path.read_text())
    assert keyfile["version"] == 3
    assert keyfile["address"] == account.address[2:].lower()
    assert keyfile["crypto"]["kdf"] == "scrypt"
    assert keyfile["crypto"]["cipher"] == "aes-128-ctr"
    assert keyfile["crypto"]["kdfparams"]["n"] == FAST_N
    assert set(keyfile) >= {"address", "crypto", "id", "version"}
    assert os.listdir(path.parent) == ["key.json"]  # temp file gone
    assert load_or_create_keystore(path, PASSWORD).address == account.address  # reused


def test_default_work_factor_is_geths() -> None:
    assert GETH_SCRYPT_N == 262144
    assert load_or_create_keystore.__kwdefaults__ == {"scrypt_n": 262144}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_refuses_group_or_world_accessible_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key.json"
    write_keystore(path, mode)
    with pytest.raises(KeystoreError, match="chmod 600"):
        load_or_create_keystore(path, PASSWORD)


def test_wrong_password_is_keystore_error_without_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "key.json"
    write_keystore(path)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeystoreError) as info:
        load_or_create_keystore(path, "wrong-password-xyz")
    assert "wrong-password-xyz" not in str(info.value)
    assert "wrong-password-xyz" not in caplog.text


def test_never_logs_password_or_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = load_or_create_keystore(tmp_path / "k.json", PASSWORD, scrypt_n=FAST_N)
    assert "keystore created" in caplog.text
    assert PASSWORD not in caplog.text
    assert account.key.hex().removeprefix("0x") not in caplog.text


def test_directory_and_garbage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="not a regular file"):
        load_or_create_keystore(tmp_path, PASSWORD)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    garbage.chmod(0o600)
    with pytest.raises(KeystoreError, match="is not a geth v3 keystore"):
        load_or_create_keystore(garbage, PASSWORD)
