"""The package's one exception hierarchy: every error the roller raises derives from RollerError."""


class RollerError(Exception):
    """Base of every roller error."""


class WireFormatError(RollerError):
    """A wire message (JSON) is malformed; the message names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class SignatureError(RollerError):
    """A signature is malformed or does not verify."""


class KeystoreError(RollerError):
    """A keystore cannot be created, read or decrypted, or has unsafe permissions."""


class ConfigError(RollerError):
    """The configuration file is invalid; the message names the key path."""


class CoordinatorError(RollerError):
    """The coordinator answered a call with a JSON-RPC error (WS) or an error envelope (HTTP).

    ``permanent`` tells a caller whether repeating the same call can succeed: False (the
    default) means retry later, True means the answer is final for this task/request."""

    permanent: bool = False

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: coordinator error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class ConnectionLost(RollerError):
    """The coordinator connection dropped or a call timed out."""


class TraceFetchError(RollerError):
    """Block traces could not be fetched from the L2 node."""


class TraceMismatch(TraceFetchError):
    """The L2 node answered a trace that is not the block asked for (another hash, a broken
    parent chain, a gap in the numbers, another chain id). Never retried and never proved:
    the job answers a failure report naming ``block``."""

    def __init__(self, block: str, reason: str) -> None:
        super().__init__(f"block {block}: {reason}")
        self.block = block
        self.reason = reason


class ProverError(RollerError):
    """The native prover returned an error (or NULL) for a task."""


class ForkNotHeld(RollerError):
    """A task names a hard fork this host does not hold (roller.forks): answered at once with
    a deterministic failure naming the fork, never fetched or proved under another fork's
    rules."""

    def __init__(self, named: str, held: tuple[str, ...]) -> None:
        super().__init__(f"hard fork {named} not held by this prover (holds "
                         f"{', '.join(held)})")
        self.named = named
        self.held = held


class WorkerUnusable(RollerError):
    """This worker process cannot prove (its prover library does not load or warm up): a
    fault of the worker, never of the task, so no attempt is counted for it."""


class BrokerUnavailable(RollerError):
    """Redis (the ledger and Celery's broker) refused or dropped a call; the message names
    the task and slot. Raised where a job is enqueued or the ledger is written, in place of
    the redis, kombu and celery errors behind it."""


class WrongGeneration(RollerError):
    """The coordinator does not speak the configured protocol generation, e.g. a login
    succeeded but the JWT names another public key (spec coordinator-http-protocol 2.5)."""


class GoDecodeError(RollerError):
    """A JSON value does not decode into the Go type the coordinator declares; the message is
    Go's encoding/json text without go-ethereum's `invalid argument N: ` prefix (the devnet
    answers it verbatim)."""


class GoSyntaxError(RollerError):
    """A message is not valid JSON; the message mimics Go's parser text (the devnet answers
    it verbatim as a -32700 error)."""


class GpuError(RollerError):
    """A worker's GPU does not exist (an index or UUID NVML does not enumerate) or cannot be
    read (fallen off the bus); the message names the GPU as configured and as NVML sees it."""
