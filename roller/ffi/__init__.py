"""Prover libraries behind a C ABI, loaded with cffi (ABI mode), plus a mock for fast tests."""

from roller.config import ProverConfig
from roller.ffi.native import Prover, default_library_path, load_prover


def load_configured_prover(cfg: ProverConfig) -> Prover:
    """The process's prover for the config's `prover` section (library, params, ABI, seed,
    chain id): what a worker proves with and what `roller config check` loads."""
    return load_prover(
        str(cfg.library_path) if cfg.library_path else None,
        str(cfg.params_path),
        abi=cfg.abi,
        seed_path=str(cfg.seed_path) if cfg.seed_path else None,
        chain_id=cfg.chain_id,
        fork_params={f.name: str(f.params_path) for f in cfg.forks},
    )


__all__ = ["Prover", "default_library_path", "load_configured_prover", "load_prover"]
