"""Prover libraries behind a C ABI, loaded with cffi (ABI mode), plus a mock for fast tests."""

from roller.ffi.native import Prover, default_library_path, load_prover

__all__ = ["Prover", "default_library_path", "load_prover"]
