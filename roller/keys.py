"""go-ethereum v3 keystore load-or-create (spec 6.2) with owner-only file permissions, and
the keystores on disk that no slot claims (a renamed slot would otherwise get a new key)."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from roller.config import RollerConfig
from roller.errors import KeystoreError

log = logging.getLogger(__name__)

GETH_SCRYPT_N = 262144  # go-ethereum StandardScryptN, what the Go roller writes


def load_or_create_keystore(
    path: str | Path, password: str, *, scrypt_n: int = GETH_SCRYPT_N
) -> LocalAccount:
    """Decrypt the keystore at ``path``; create it first (new random key) if it is absent.

    A new file is written to a temporary file in the same directory (mode 0600) and linked
    into place, so a crash never leaves a partial keystore and a concurrent creator never
    clobbers an existing key. An existing file readable or writable by group/other is
    refused. ``scrypt_n`` only affects newly created files (tests lower it).
    """
    target = Path(path)
    _require_password(target, password)
    if not target.exists():
        _create(target, password, scrypt_n)
    return _load(target, password)


def load_keystore(path: str | Path, password: str) -> LocalAccount:
    """Decrypt an existing keystore (never create one): mode, type, format and password
    are checked as at start."""
    return _load(Path(path), password)


def _require_password(target: Path, password: str) -> None:
    # Only the listener's environment holds the password (workers and Flower load the same
    # config without it): an empty one means this process was never meant to hold keys.
    if not password:
        raise KeystoreError(f"no keystore password for keystore path={target}: set "
                            "$ROLLER_KEYSTORE_PASSWORD (or keystore_password) for the "
                            "listener")


def _load(target: Path, password: str) -> LocalAccount:
    _require_password(target, password)
    try:
        st = target.stat()
    except OSError as exc:
        raise KeystoreError(f"cannot stat keystore path={target}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeystoreError(f"keystore path={target} is not a regular file")
    if st.st_mode & 0o077:
        raise KeystoreError(
            f"keystore path={target} has unsafe mode {stat.S_IMODE(st.st_mode):04o}; "
            "it must not be accessible by group or other (chmod 600)"
        )
    try:
        keyfile = json.loads(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore path={target}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(f"keystore path={target} is not a geth v3 keystore "
                            f"(not JSON: {exc})") from exc
    if not isinstance(keyfile, dict) or not isinstance(
            keyfile.get("crypto") or keyfile.get("Crypto"), dict):
        raise KeystoreError(f"keystore path={target} is not a geth v3 keystore "
                            "(no 'crypto' object)")
    try:
        key = Account.decrypt(keyfile, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(
                f"wrong password for keystore path={target} (keystore_password or "
                "$ROLLER_KEYSTORE_PASSWORD)") from exc
        raise KeystoreError(f"cannot decrypt keystore path={target}: {exc}") from exc
    except Exception as exc:  # eth-keyfile raises KeyError/TypeError variants on bad shapes
        # The library's text never contains the password; keep only its type and message.
        raise KeystoreError(
            f"cannot decrypt keystore path={target}: {type(exc).__name__}: {exc}"
        ) from exc
    account: LocalAccount = Account.from_key(key)
    log.info("keystore loaded path=%s address=%s", target, account.address)
    return account


def _create(target: Path, password: str, scrypt_n: int) -> None:
    directory = target.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeystoreError(f"cannot create keystore directory={directory}: {exc}") from exc
    account = Account.create()
    keyfile = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    keyfile["address"] = keyfile["address"].lower()  # geth writes lowercase hex
    fd, tmp_name = tempfile.mkstemp(prefix=".keystore-", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keyfile, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, target)
        except FileExistsError:
            log.info("keystore appeared concurrently, using it path=%s", target)
            return
        except OSError:
            # Filesystems without hard links: a plain rename (may replace a racing file).
            os.replace(tmp, target)
        _fsync_dir(directory)
        log.info("keystore created path=%s address=%s", target, account.address)
    except OSError as exc:
        raise KeystoreError(f"cannot write keystore path={target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def orphan_keystores(cfg: RollerConfig) -> list[tuple[str, Path, list[Path]]]:
    """Slots whose keystore is absent (a new key would be created) while keystores beside
    it belong to no slot: (slot, its keystore path, the unclaimed files)."""
    claimed = {s.keystore_path.resolve() for s in cfg.slots}
    found = []
    for slot in cfg.slots:
        path = slot.keystore_path
        if path.exists() or not path.parent.is_dir():
            continue
        others = sorted(p for p in path.parent.glob("*.json")
                        if p.resolve() not in claimed and _looks_like_keystore(p))
        if others:
            found.append((slot.name, path, others))
    return found


def _looks_like_keystore(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("crypto") or data.get("Crypto"), dict)
