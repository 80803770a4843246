"""A directory of block traces (`.json` / `.json.gz`, recursive), indexed by hash and number.

Hash collisions (the upstream `traces/` fixtures reuse headers): the first file in sorted
path order is served, the others are listed in `skipped` and logged.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from roller.errors import ConfigError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_TRACE_DIR = DATA_DIR / "chain-534352"


@dataclass(frozen=True)
class TraceEntry:
    """One served trace: where it came from, its header keys and its raw JSON text."""

    path: Path
    number: int
    hash: str
    parent_hash: str
    raw: bytes
    timestamp: int = 0  # the header's: what Darwin and DarwinV2 switch on at


@dataclass
class TraceIndex:
    """Served traces by lowercase hash and by number; `skipped` lists colliding files."""

    root: Path
    by_hash: dict[str, TraceEntry] = field(default_factory=dict)
    by_number: dict[int, TraceEntry] = field(default_factory=dict)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)

    def ordered(self) -> list[TraceEntry]:
        return sorted(self.by_hash.values(), key=lambda e: e.number)


def _quantity(value: object) -> int:
    """A header quantity: a 0x hex string (l2geth) or a JSON number (older traces)."""
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return int(value) if isinstance(value, int) else 0


def read_trace_file(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _trace_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))
    )


_cache: dict[tuple[str, tuple[tuple[str, float], ...]], TraceIndex] = {}
_cache_lock = threading.Lock()


def load_trace_dir(root: Path | str) -> TraceIndex:
    """Index a trace directory (cached per directory content: tests start many devnets)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"trace dir {root}: not a directory")
    files = _trace_files(root)
    key = (str(root.resolve()), tuple((str(p), p.stat().st_mtime) for p in files))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    index = TraceIndex(root=root)
    for path in files:
        raw = read_trace_file(path)
        header = json.loads(raw)["header"]
        entry = TraceEntry(
            path=path,
            number=int(header["number"], 16),
            hash=header["hash"].lower(),
            parent_hash=header["parentHash"].lower(),
            raw=raw,
            timestamp=_quantity(header.get("timestamp", 0)),
        )
        kept = index.by_hash.get(entry.hash)
        if kept is not None:
            index.skipped.append((path, kept.path))
            log.warning(
                "trace skipped reason=hash_collision file=%s hash=%s served=%s",
                path, entry.hash, kept.path,
            )
            continue
        index.by_hash[entry.hash] = entry
        index.by_number.setdefault(entry.number, entry)
    log.info("traces loaded dir=%s served=%d skipped=%d", root, len(index.by_hash),
             len(index.skipped))
    with _cache_lock:
        _cache[key] = index
    return index
