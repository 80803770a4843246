"""A fake `pynvml` (nvidia-ml-py) for the GPU view's tests: the same function, constant and
error names the roller calls, over devices described as dicts.

In-process: `configure([...])`. In a subprocess (a real `celery worker`): put this directory
first on PYTHONPATH and name a JSON file of the same list in $FAKE_NVML_DEVICES; without it,
`nvmlInit` fails like a host without a driver.

A device dict: uuid, name, util (percent), mem_used, mem_total (bytes), temp, power_mw,
ecc_uncorrected, retired_pending (0/1), remapped (corr, unc, pending, failure), throttle
(bitmask); a key set to "unsupported" raises NotSupported, "lost" raises GPU is lost.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_FEATURE_ENABLED = 1

_TEXT = {2: "Invalid Argument", 3: "Not Supported", 9: "Driver Not Loaded",
         12: "NVML Shared Library Not Found", 15: "GPU is lost", 16: "GPU requires restart"}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _TEXT.get(self.value, f"error {self.value}")


DEVICES: list[dict[str, Any]] = []
INIT_ERROR: int | None = NVML_ERROR_LIBRARY_NOT_FOUND
CALLS: list[str] = []


def configure(devices: list[dict[str, Any]] | None, init_error: int | None = None) -> None:
    """Devices for the next calls; None: no driver (nvmlInit fails with `init_error`)."""
    global INIT_ERROR
    DEVICES[:] = [dict(d) for d in devices or []]
    INIT_ERROR = (init_error or NVML_ERROR_LIBRARY_NOT_FOUND) if devices is None else init_error
    CALLS.clear()


def _from_env() -> None:
    path = os.environ.get("FAKE_NVML_DEVICES")
    if path:
        configure(json.loads(open(path).read()))


_from_env()


def _field(handle: int, key: str, default: Any = None) -> Any:
    CALLS.append(key)
    value = DEVICES[handle].get(key, default)
    if value == "unsupported":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if value == "lost" or DEVICES[handle].get("lost"):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    return value


def nvmlInit() -> None:
    if INIT_ERROR is not None:
        raise NVMLError(INIT_ERROR)


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(DEVICES)


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < len(DEVICES):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return index


def nvmlDeviceGetUUID(handle: int) -> str:
    return str(_field(handle, "uuid"))


def nvmlDeviceGetName(handle: int) -> str:
    return str(_field(handle, "name", "NVIDIA H200"))


def nvmlDeviceGetUtilizationRates(handle: int) -> Any:
    return SimpleNamespace(gpu=_field(handle, "util", 0), memory=0)


def nvmlDeviceGetMemoryInfo(handle: int) -> Any:
    return SimpleNamespace(used=_field(handle, "mem_used", 615 << 20),
                           total=_field(handle, "mem_total", 143771 << 20),
                           free=0)


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    assert sensor == NVML_TEMPERATURE_GPU
    return int(_field(handle, "temp", 39))


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    return int(_field(handle, "power_mw", 78800))


def nvmlDeviceGetTotalEccErrors(handle: int, error_type: int, counter: int) -> int:
    assert (error_type, counter) == (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC)
    return int(_field(handle, "ecc_uncorrected", 0))


def nvmlDeviceGetRetiredPagesPendingStatus(handle: int) -> int:
    # Hopper: not supported (it remaps rows instead), as measured on an H200.
    return int(_field(handle, "retired_pending", "unsupported"))


def nvmlDeviceGetRemappedRows(handle: int) -> tuple[int, int, int, int]:
    return tuple(_field(handle, "remapped", (0, 0, 0, 0)))  # type: ignore[return-value]


def nvmlDeviceGetCurrentClocksEventReasons(handle: int) -> int:
    return int(_field(handle, "throttle", 1))
