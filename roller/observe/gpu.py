"""The GPUs as NVML sees them: which device a worker drives, what it reads, whether it is fit.

NVML comes from the optional `nvidia-ml-py` package (`pip install 'roller[gpu]'`), imported
only by `load()`. Without the package, or without an NVIDIA driver (a CPU host, a devnet),
`load()` logs one INFO line and returns None: the caller has no GPU view, and nothing else
changes. It is never an error.

Mapping a worker to its device. NVML ignores `CUDA_VISIBLE_DEVICES` and enumerates every GPU
of the host in PCI bus order; CUDA numbers the visible devices in that same order only with
`CUDA_DEVICE_ORDER=PCI_BUS_ID` (the worker's start sets it, the shipped units too). So each
entry of `CUDA_VISIBLE_DEVICES` is mapped here: an index to NVML's device of that index, a
`GPU-...` UUID (or a unique prefix of one, as CUDA accepts) to the device with that UUID.
An index or UUID NVML does not enumerate raises GpuError: CUDA would silently show the
prover no device at all, and the proof would fail later, or run on the CPU.

Failure model of a reading (`Nvml.sample`):
- a call NVML does not support on this GPU (retired pages on Hopper, which remaps rows
  instead; ECC on a card without it) gives None for that value, never "unhealthy";
- `GPU is lost` (fallen off the bus, Xid 79) or `GPU requires reset` on any call marks the
  sample `lost`: it is a fence reason, not an exception;
- any other NVML error on one value gives None for that value (logged at DEBUG).
Fence reasons (`GpuSample.fence_reason`): lost, uncorrectable ECC errors since the last
reset (volatile counter), a failed row remapping (the GPU needs replacing). Pending page
retirement or row remapping is reported, not fenced: the GPU works until its next reset.

Xid events (`nvmlEventSetWait`) are not watched: a GPU that fell off the bus answers every
poll with `GPU is lost`, and ECC errors show in the counters, within one poll interval.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from roller.errors import GpuError
from roller.logs import kv

log = logging.getLogger(__name__)

# NVML's clock event ("throttle") reasons, by bit (nvmlClocksEventReason*), as metric labels.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}
# NVML return codes (nvml.h); read from the module when it has them.
_NOT_SUPPORTED = 3
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_TEMPERATURE_GPU = 0
_UNCORRECTED = 1
_VOLATILE_ECC = 0
_FEATURE_ENABLED = 1

FENCE_LOST = "lost"
FENCE_ECC = "ecc_uncorrected"
FENCE_ROW_REMAP = "row_remap_failure"


@dataclass(frozen=True)
class GpuRef:
    """One device a worker drives: the `CUDA_VISIBLE_DEVICES` entry and NVML's view of it."""

    visible: str  # as configured: "0", "GPU-8932f937-..."
    index: int  # NVML's index (PCI bus order), not CUDA's
    uuid: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"GpuRef.index: expected >= 0, got {self.index}")
        if not self.uuid:
            raise ValueError(f"GpuRef.uuid: empty for GPU {self.visible!r}")

    def label(self) -> str:
        return f"GPU {self.index} ({self.uuid})"


@dataclass(frozen=True)
class GpuSample:
    """One reading of a device; None where NVML cannot tell (unsupported, unreadable)."""

    ref: GpuRef
    utilization: float | None = None  # 0..1 over NVML's last sample period (about 1 s)
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    temperature: float | None = None  # degrees C
    power: float | None = None  # watts
    ecc_uncorrected: int | None = None  # since the last reset or driver load (volatile)
    retired_pages_pending: bool | None = None
    remap_pending: bool | None = None  # row remapping waits for a reset (Ampere and later)
    remap_failure: bool | None = None  # row remapping failed: replace the GPU
    throttle: frozenset[str] | None = None  # THROTTLE_REASONS names active now
    lost: str = ""  # NVML's error when the device is gone ("GPU is lost"), else ""

    def __post_init__(self) -> None:
        if self.utilization is not None and not 0 <= self.utilization <= 1:
            raise ValueError(f"GpuSample.utilization of {self.ref.label()}: expected 0..1, "
                             f"got {self.utilization}")
        for name in ("memory_used", "memory_total", "power", "ecc_uncorrected"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"GpuSample.{name} of {self.ref.label()}: negative ({value})")

    def fence_reason(self) -> tuple[str, str] | None:
        """(code, one-line explanation) when the GPU must stop taking jobs, else None."""
        if self.lost:
            return FENCE_LOST, f"{self.ref.label()} fell off the bus (NVML: {self.lost})"
        if self.ecc_uncorrected:
            return FENCE_ECC, (f"{self.ref.label()} has {self.ecc_uncorrected} uncorrectable "
                               "ECC error(s) since its last reset")
        if self.remap_failure:
            return FENCE_ROW_REMAP, f"{self.ref.label()} failed to remap a memory row"
        return None


class Nvml:
    """NVML through a narrow seam: `lib` is the `pynvml` module or a test's fake of it
    (the same function and constant names). Initialised by `load()`."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.error: type[Exception] = lib.NVMLError

    def _const(self, name: str, default: int) -> int:
        return int(getattr(self.lib, name, default))

    def count(self) -> int:
        return int(self.lib.nvmlDeviceGetCount())

    def _uuids(self) -> list[str]:
        """Every device's UUID by NVML index; the NVML error text for one it cannot read."""
        lib = self.lib
        uuids = []
        for i in range(self.count()):
            try:
                uuids.append(_text(lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i))))
            except self.error as exc:
                uuids.append(f"unreadable: {exc}")
        return uuids

    def resolve(self, visible: str | None) -> list[GpuRef]:
        """The devices of a `CUDA_VISIBLE_DEVICES` value (module docstring). None (unset):
        no pinning, so no device of its own; "" or a negative index: CUDA sees none."""
        if visible is None:
            return []
        uuids = self._uuids()
        refs: list[GpuRef] = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry:
                continue
            if entry.lstrip("-").isdigit():
                index = int(entry)
                if index < 0:
                    break  # CUDA stops at the first invalid entry: nothing after it is seen
                if index >= len(uuids):
                    raise GpuError(f"CUDA_VISIBLE_DEVICES={visible}: GPU index {index} does not "
                                   f"exist (NVML sees {_count_text(len(uuids))})")
            elif entry.startswith("MIG-"):
                log.info("no GPU view of a MIG instance %s", kv(cuda_visible_devices=entry))
                continue
            else:
                matches = [i for i, u in enumerate(uuids) if u.startswith(entry)]
                if len(matches) != 1:
                    what = "does not exist" if not matches else "names several GPUs"
                    raise GpuError(f"CUDA_VISIBLE_DEVICES={visible}: GPU {entry} {what} (NVML "
                                   f"sees {_count_text(len(uuids))}: {', '.join(uuids)})")
                index = matches[0]
            if uuids[index].startswith("unreadable: "):
                raise GpuError(f"CUDA_VISIBLE_DEVICES={visible}: GPU index {index} cannot be "
                               f"read ({uuids[index].removeprefix('unreadable: ')})")
            try:
                name = _text(self.lib.nvmlDeviceGetName(self.lib.nvmlDeviceGetHandleByIndex(index)))
            except self.error:
                name = ""
            refs.append(GpuRef(entry, index, uuids[index], name))
        return refs

    def sample(self, ref: GpuRef) -> GpuSample:
        lib = self.lib
        try:
            handle = lib.nvmlDeviceGetHandleByIndex(ref.index)
            uuid = _text(lib.nvmlDeviceGetUUID(handle))
        except self.error as exc:
            if self._is_lost(exc):
                return GpuSample(ref, lost=str(exc))
            raise GpuError(f"{ref.label()}: NVML cannot open it: {exc}") from exc
        if uuid != ref.uuid:  # NVML re-enumerated (driver reload): index is someone else
            return GpuSample(ref, lost=f"index {ref.index} is now {uuid}")
        values: dict[str, Any] = {}
        try:
            util = self._value(lambda: lib.nvmlDeviceGetUtilizationRates(handle))
            values["utilization"] = min(util.gpu / 100.0, 1.0) if util is not None else None
            memory = self._value(lambda: lib.nvmlDeviceGetMemoryInfo(handle))
            if memory is not None:
                values["memory_used"], values["memory_total"] = int(memory.used), int(
                    memory.total)
            values["temperature"] = self._value(lambda: float(lib.nvmlDeviceGetTemperature(
                handle, self._const("NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU))))
            milliwatts = self._value(lambda: lib.nvmlDeviceGetPowerUsage(handle))
            values["power"] = milliwatts / 1000.0 if milliwatts is not None else None
            values["ecc_uncorrected"] = self._value(lambda: int(lib.nvmlDeviceGetTotalEccErrors(
                handle, self._const("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", _UNCORRECTED),
                self._const("NVML_VOLATILE_ECC", _VOLATILE_ECC))))
            pending = self._value(lambda: lib.nvmlDeviceGetRetiredPagesPendingStatus(handle))
            values["retired_pages_pending"] = (
                None if pending is None
                else int(pending) == self._const("NVML_FEATURE_ENABLED", _FEATURE_ENABLED))
            rows = self._value(lambda: lib.nvmlDeviceGetRemappedRows(handle))
            if rows is not None:
                values["remap_pending"], values["remap_failure"] = bool(rows[2]), bool(rows[3])
            values["throttle"] = self._throttle(handle)
        except _Lost as lost:
            return GpuSample(ref, lost=lost.message)
        return GpuSample(ref, **values)

    def _throttle(self, handle: Any) -> frozenset[str] | None:
        # Renamed "clocks event reasons" in NVML 12.2; older drivers have only the old name.
        fn = (getattr(self.lib, "nvmlDeviceGetCurrentClocksEventReasons", None)
              or getattr(self.lib, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        if fn is None:
            return None
        mask = self._value(lambda: int(fn(handle)))
        if mask is None:
            return None
        return frozenset(name for bit, name in THROTTLE_REASONS.items() if mask & bit)

    def _is_lost(self, exc: Exception) -> bool:
        return getattr(exc, "value", None) in (self._const("NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST),
                                               self._const("NVML_ERROR_RESET_REQUIRED",
                                                           _RESET_REQUIRED))

    def _value(self, read: Callable[[], Any]) -> Any:
        """One NVML value: None when unsupported or unreadable; _Lost when the GPU is gone."""
        try:
            return read()
        except self.error as exc:
            if self._is_lost(exc):
                raise _Lost(str(exc)) from exc
            if getattr(exc, "value", None) != self._const("NVML_ERROR_NOT_SUPPORTED",
                                                          _NOT_SUPPORTED):
                log.debug("NVML read failed %s", kv(error=exc))
            return None

    def close(self) -> None:
        try:
            self.lib.nvmlShutdown()
        except self.error as exc:
            log.debug("NVML shutdown failed %s", kv(error=exc))


class _Lost(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _count_text(n: int) -> str:
    return "no GPU" if n == 0 else f"{n} GPU(s): index 0-{n - 1}"


def _import_pynvml() -> ModuleType:
    return importlib.import_module("pynvml")


def load(importer: Callable[[], Any] = _import_pynvml) -> Nvml | None:
    """NVML initialised, or None with one INFO line (package absent, no driver, no GPU).

    `importer` is the seam: tests pass a fake `pynvml`."""
    try:
        lib = importer()
    except ImportError:
        log.info("no GPU view: nvidia-ml-py is not installed (pip install 'roller[gpu]')")
        return None
    try:
        lib.nvmlInit()
    except lib.NVMLError as exc:
        log.info("no GPU view: NVML unavailable %s", kv(error=exc))
        return None
    return Nvml(lib)
