"""Builds native/ in release mode and installs the library where roller.ffi finds it.

    python -m roller.ffi.build                              # -> roller/ffi/lib/libroller_prover.so
    python -m roller.ffi.build --features fault-injection   # test build, never installed by default

A build with features uses its own cargo target dir (native/target/features-<names>), so the
default library in native/target/release never carries test-only code.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from roller.ffi.native import _PACKAGE_LIB, _REPO_LIB, LIBRARY_NAME

TARGET = _REPO_LIB.parents[1]
MANIFEST = TARGET.parent / "Cargo.toml"


def build(features: str | None = None, install_to: Path | None = None) -> Path:
    """Runs cargo; returns the installed path (or the cargo output when not installing)."""
    cmd = ["cargo", "build", "--release", "--manifest-path", str(MANIFEST)]
    built = _REPO_LIB
    if features:
        target = TARGET / ("features-" + features.replace(",", "-").replace(" ", ""))
        cmd += ["--features", features, "--target-dir", str(target)]
        built = target / "release" / LIBRARY_NAME
    # Run inside native/: cargo reads native/.cargo/config.toml (RUSTC_BOOTSTRAP) from the cwd only.
    subprocess.run(cmd, check=True, cwd=MANIFEST.parent)
    if install_to is None:
        return built
    install_to.parent.mkdir(parents=True, exist_ok=True)
    # Copy to a temporary name and rename: a running process may have the old library mapped.
    tmp = install_to.with_name(install_to.name + ".tmp")
    shutil.copy2(built, tmp)
    tmp.replace(install_to)
    return install_to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the native prover library.")
    parser.add_argument("--features", help="cargo features, e.g. fault-injection (tests only)")
    parser.add_argument("--out", type=Path, help="install the library here")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.features else _PACKAGE_LIB
    print(build(args.features, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
