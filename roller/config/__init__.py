"""The roller's configuration: one `RollerConfig` per process (`process_config`).

`model` holds the frozen dataclasses and the names every process reads the config by;
`load` reads and validates the config file (every error names its key path).
"""

from roller.config.load import identity_suffix, load_config, parse_config, process_config
from roller.config.model import (
    DEFAULT_BROKER_URL,
    DEFAULT_HTTP_PROVER_VERSION,
    ENV_BROKER_PASSWORD,
    ENV_BROKER_URL,
    ENV_CONFIG,
    ENV_FLOWER_PASSWORD,
    ENV_KEYSTORE_PASSWORD,
    HTTP_PROTOCOLS,
    PROOF_KINDS,
    PROTOCOLS,
    PROVE_TYPES,
    RECONCILE_INTERVAL_SECONDS,
    WS_PROTOCOLS,
    CoordinatorConfig,
    FlowerConfig,
    ForkConfig,
    MetricsConfig,
    ProverConfig,
    RetryConfig,
    RollerConfig,
    SlotConfig,
    proof_kind,
)

__all__ = ["DEFAULT_BROKER_URL", "DEFAULT_HTTP_PROVER_VERSION", "ENV_BROKER_PASSWORD",
           "ENV_BROKER_URL", "ENV_CONFIG", "ENV_FLOWER_PASSWORD", "ENV_KEYSTORE_PASSWORD",
           "HTTP_PROTOCOLS", "PROOF_KINDS", "PROTOCOLS", "PROVE_TYPES",
           "RECONCILE_INTERVAL_SECONDS", "WS_PROTOCOLS",
           "CoordinatorConfig", "FlowerConfig", "ForkConfig", "MetricsConfig", "ProverConfig",
           "RetryConfig",
           "RollerConfig", "SlotConfig", "identity_suffix", "load_config", "parse_config",
           "process_config", "proof_kind"]
