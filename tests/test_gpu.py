"""The GPU view through an injected NVML (tests/fake_nvml/pynvml.py, pynvml's names over
fake devices): mapping CUDA_VISIBLE_DEVICES to devices, readings, fencing, the worker's start
check in a real `celery worker`, `roller status`'s GPU column, and a CPU host (no
nvidia-ml-py, or no driver) where none of it shows and nothing fails."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import REGISTRY

from roller.errors import GpuError
from roller.localrun import python_env
from roller.observe import gpu
from roller.operator.status import SlotStatus, gpu_cell, render
from roller.worker import gpu_guard
from roller.worker.gpu_guard import GpuGuard

FAKE_DIR = Path(__file__).with_name("fake_nvml")
UUIDS = ["GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", "GPU-11111111-2222-3333-4444-555555555555"]


def _fake_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_DIR / "pynvml.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake() -> ModuleType:
    module = _fake_module()
    module.configure([{"uuid": UUIDS[0], "util": 87, "temp": 61},
                      {"uuid": UUIDS[1], "util": 0}])
    return module


def nvml_of(fake: ModuleType) -> gpu.Nvml:
    nvml = gpu.load(lambda: fake)
    assert nvml is not None
    return nvml


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


# -- mapping CUDA_VISIBLE_DEVICES to NVML's devices ------------------------------------------

def test_visible_devices_map_by_index_uuid_and_uuid_prefix(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    assert [(r.index, r.uuid) for r in nvml.resolve("1")] == [(1, UUIDS[1])]
    assert [r.index for r in nvml.resolve(UUIDS[1])] == [1]
    assert [r.index for r in nvml.resolve("GPU-8932f937")] == [0]  # CUDA accepts prefixes
    assert [r.index for r in nvml.resolve("1,0")] == [1, 0]
    assert nvml.resolve(None) == []  # not pinned: the worker has no GPU of its own
    assert nvml.resolve("") == []
    assert nvml.resolve("-1,0") == []  # CUDA sees nothing from the first invalid entry
    assert nvml.resolve("MIG-1234") == []


@pytest.mark.parametrize(("visible", "message"), [
    ("2", "CUDA_VISIBLE_DEVICES=2: GPU index 2 does not exist (NVML sees 2 GPU(s): "
          "index 0-1)"),
    ("0,7", "GPU index 7 does not exist"),
    ("GPU-deadbeef", "GPU GPU-deadbeef does not exist"),
    ("GPU-", "GPU GPU- names several GPUs"),
])
def test_a_missing_gpu_is_an_error(fake: ModuleType, visible: str, message: str) -> None:
    with pytest.raises(GpuError, match=message.replace("(", r"\(").replace(")", r"\)")):
        nvml_of(fake).resolve(visible)


def test_no_gpu_at_all(fake: ModuleType) -> None:
    fake.configure([])
    with pytest.raises(GpuError, match=r"GPU index 0 does not exist \(NVML sees no GPU\)"):
        nvml_of(fake).resolve("0")


# -- readings ------------------------------------------------------------------------------

def test_a_healthy_h200_reading(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    sample = nvml.sample(nvml.resolve("0")[0])
    assert sample.utilization == pytest.approx(0.87)
    assert sample.temperature == 61
    assert sample.power == pytest.approx(78.8)
    assert (sample.memory_used, sample.memory_total) == (615 << 20, 143771 << 20)
    assert sample.ecc_uncorrected == 0
    assert sample.retired_pages_pending is None  # not supported on Hopper: unknown, not bad
    assert (sample.remap_pending, sample.remap_failure) == (False, False)
    assert sample.throttle == frozenset({"gpu_idle"})
    assert sample.fence_reason() is None


def test_unsupported_values_are_unknown_not_unhealthy(fake: ModuleType) -> None:
    fake.configure([{"uuid": UUIDS[0], "ecc_uncorrected": "unsupported",
                     "remapped": "unsupported", "throttle": "unsupported",
                     "power_mw": "unsupported"}])
    nvml = nvml_of(fake)
    sample = nvml.sample(nvml.resolve("0")[0])
    assert (sample.ecc_uncorrected, sample.remap_failure, sample.throttle, sample.power) == (
        None, None, None, None)
    assert sample.temperature == 39
    assert sample.fence_reason() is None


@pytest.mark.parametrize(("device", "code", "why"), [
    ({"ecc_uncorrected": 2}, gpu.FENCE_ECC, "has 2 uncorrectable ECC error(s)"),
    ({"lost": True}, gpu.FENCE_LOST, "fell off the bus (NVML: GPU is lost)"),
    ({"temp": "lost"}, gpu.FENCE_LOST, "fell off the bus (NVML: GPU is lost)"),
    ({"remapped": (0, 1, 0, 1)}, gpu.FENCE_ROW_REMAP, "failed to remap a memory row"),
])
def test_fence_reasons(fake: ModuleType, device: dict[str, Any], code: str, why: str) -> None:
    nvml = nvml_of(fake)
    ref = nvml.resolve("0")[0]
    fake.DEVICES[0].update(device)  # goes bad after the worker started
    reason = nvml.sample(ref).fence_reason()
    assert reason is not None and reason[0] == code
    assert reason[1] == f"GPU 0 ({UUIDS[0]}) {why}" + (
        " since its last reset" if code == gpu.FENCE_ECC else "")


def test_pending_remap_is_reported_not_fenced(fake: ModuleType) -> None:
    fake.DEVICES[0]["remapped"] = (3, 0, 1, 0)
    nvml = nvml_of(fake)
    sample = nvml.sample(nvml.resolve("0")[0])
    assert sample.remap_pending is True and sample.fence_reason() is None


def test_a_driver_reload_that_renumbers_gpus_is_seen(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    ref = nvml.resolve("0")[0]
    fake.DEVICES.reverse()
    assert nvml.sample(ref).fence_reason() == (
        gpu.FENCE_LOST, f"GPU 0 ({UUIDS[0]}) fell off the bus (NVML: index 0 is now {UUIDS[1]})")


# -- a CPU host: no package, no driver -------------------------------------------------------

def test_without_nvidia_ml_py_there_is_no_gpu_view(caplog: pytest.LogCaptureFixture) -> None:
    def absent() -> ModuleType:
        raise ModuleNotFoundError("No module named 'pynvml'")

    with caplog.at_level(logging.DEBUG, logger="roller"):
        assert gpu.load(absent) is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "no GPU view: nvidia-ml-py is not installed (pip install 'roller[gpu]')")]


def test_without_a_driver_there_is_no_gpu_view(caplog: pytest.LogCaptureFixture) -> None:
    module = _fake_module()
    module.configure(None)
    with caplog.at_level(logging.DEBUG, logger="roller"):
        assert gpu.load(lambda: module) is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", 'no GPU view: NVML unavailable error="NVML Shared Library Not Found"')]


def test_this_host_has_no_gpu_view(caplog: pytest.LogCaptureFixture) -> None:
    """The real import on this CPU machine: no nvidia-ml-py, or no driver behind it."""
    with caplog.at_level(logging.DEBUG, logger="roller"):
        assert gpu.load() is None
        assert gpu_guard.check("0") == []
    assert {r.levelname for r in caplog.records} == {"INFO"}
    assert all(r.getMessage().startswith("no GPU view: ") for r in caplog.records)


# -- the worker: metrics and fencing -----------------------------------------------------------

class Stopper:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.notes: list[str] = []  # what the listener was told, per call

    def __call__(self, queues: list[str], note: str = "") -> None:
        self.calls.append(queues)
        self.notes.append(note)


def test_readings_become_metrics(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    stopper = Stopper()
    guard = GpuGuard(nvml, nvml.resolve("0"), "gpu0@metrics", ["gpu0"], stopper)
    guard.start()
    guard.poll()
    labels = {"worker": "gpu0@metrics", "gpu": "0", "uuid": UUIDS[0]}
    assert value("roller_gpu_utilization_ratio", **labels) == pytest.approx(0.87)
    assert value("roller_gpu_temperature_celsius", **labels) == 61
    assert value("roller_gpu_power_watts", **labels) == pytest.approx(78.8)
    assert value("roller_gpu_memory_total_bytes", **labels) == 143771 << 20
    assert value("roller_gpu_ecc_uncorrected_errors", **labels) == 0
    assert value("roller_gpu_retired_pages_pending", **labels) is None  # unsupported
    assert value("roller_gpu_throttled", **labels, reason="gpu_idle") == 1
    assert value("roller_gpu_throttled", **labels, reason="hw_thermal") == 0
    assert value("roller_gpu_fenced", **labels, reason="none") == 0
    assert value("roller_worker_consuming", worker="gpu0@metrics", queue="gpu0") == 1
    assert stopper.calls == [] and guard.fenced is None


def test_an_ecc_error_fences_the_worker_once(fake: ModuleType,
                                             caplog: pytest.LogCaptureFixture) -> None:
    nvml = nvml_of(fake)
    stopper = Stopper()
    guard = GpuGuard(nvml, nvml.resolve("1"), "gpu1@fence", ["gpu1", "gpu1b"], stopper)
    guard.start()
    guard.poll()
    fake.DEVICES[1]["ecc_uncorrected"] = 1
    with caplog.at_level(logging.INFO, logger="roller"):
        guard.poll()
        guard.poll()  # sticky: said and done once
    fake.DEVICES[1]["ecc_uncorrected"] = 0
    guard.poll()  # a counter back at 0 (it cannot, short of a reset) does not unfence
    assert stopper.calls == [["gpu1", "gpu1b"]]
    assert guard.fenced is not None and guard.fenced[0] == gpu.FENCE_ECC
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [
        f"GPU fenced, the worker stops taking jobs: GPU 1 ({UUIDS[1]}) has 1 uncorrectable "
        f"ECC error(s) since its last reset worker=gpu1@fence queues=gpu1,gpu1b gpu=1 "
        f"uuid={UUIDS[1]} reason=ecc_uncorrected"]
    labels = {"worker": "gpu1@fence", "gpu": "1", "uuid": UUIDS[1]}
    assert value("roller_gpu_fenced", **labels, reason="ecc_uncorrected") == 1
    assert value("roller_worker_consuming", worker="gpu1@fence", queue="gpu1b") == 0


def test_a_gpu_lost_mid_run_fences_and_zeroes_its_utilisation(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    stopper = Stopper()
    guard = GpuGuard(nvml, nvml.resolve("0"), "gpu0@lost", ["gpu0"], stopper)
    guard.start()
    guard.poll()
    fake.DEVICES[0]["lost"] = True
    guard.poll()
    labels = {"worker": "gpu0@lost", "gpu": "0", "uuid": UUIDS[0]}
    assert value("roller_gpu_fenced", **labels, reason="lost") == 1
    assert value("roller_gpu_utilization_ratio", **labels) == 0
    assert stopper.calls == [["gpu0"]]


def test_the_sampler_survives_a_failing_read(fake: ModuleType,
                                             caplog: pytest.LogCaptureFixture) -> None:
    nvml = nvml_of(fake)
    guard = GpuGuard(nvml, nvml.resolve("0"), "gpu0@flaky", ["gpu0"], Stopper())
    setattr(fake, "nvmlDeviceGetHandleByIndex",  # noqa: B010 - a module attribute
            lambda index: (_ for _ in ()).throw(OSError("flaky")))
    thread = threading.Thread(target=guard.run, args=(0.01,))
    with caplog.at_level(logging.WARNING, logger="roller"):
        thread.start()
        threading.Event().wait(0.1)
        guard.stopped.set()
        thread.join(5)
    assert not thread.is_alive()
    assert any("GPU reading failed" in r.getMessage() for r in caplog.records)


class FakeConsumer:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, int]] = []
        self.soon: list[Any] = []
        self.hub = self

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def cancel_task_queue(self, queue: str) -> None:
        self.cancelled.append((queue, threading.get_ident()))


def test_fencing_cancels_queues_on_the_consumers_loop() -> None:
    consumer = FakeConsumer()
    stop = gpu_guard.consumer_stopper(consumer)  # built in the loop's thread (worker_ready)
    stop(["gpu0"])  # the loop's thread, before the loop runs: at once
    assert consumer.cancelled == [("gpu0", threading.get_ident())]
    other = threading.Thread(target=stop, args=(["gpu1"],))
    other.start()
    other.join()
    assert len(consumer.cancelled) == 1 and len(consumer.soon) == 1  # scheduled, not run
    consumer.soon.pop()()  # the loop runs it, in its own thread
    assert consumer.cancelled[-1] == ("gpu1", threading.get_ident())


class Sender(FakeConsumer):
    """What worker_ready sends: the worker's consumer."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        super().__init__()
        self.hostname = hostname
        self.task_consumer = type("TaskConsumer", (), {
            "queues": [type("Queue", (), {"name": q})() for q in queues]})()


@pytest.fixture
def no_gpu_state() -> Any:
    yield
    gpu_guard._nvml, gpu_guard._refs = None, []
    if gpu_guard._guard is not None:
        gpu_guard._guard.stopped.set()
        gpu_guard._guard = None


def test_a_cpu_worker_reports_its_queues_and_no_gpu(no_gpu_state: None) -> None:
    assert gpu_guard.check("0", loader=lambda: None) == []
    gpu_guard.start_sampler(sender=Sender("gpu0@cpu", ["gpu0"]))
    assert value("roller_worker_consuming", worker="gpu0@cpu", queue="gpu0") == 1
    assert gpu_guard._guard is None
    assert not [s for m in REGISTRY.collect() for s in m.samples
                if s.name.startswith("roller_gpu_") and s.labels.get("worker") == "gpu0@cpu"]


def test_a_gpu_failing_at_start_is_fenced_before_the_first_job(fake: ModuleType,
                                                               no_gpu_state: None) -> None:
    fake.DEVICES[0]["ecc_uncorrected"] = 3
    refs = gpu_guard.check("0", loader=lambda: nvml_of(fake))
    assert [r.uuid for r in refs] == [UUIDS[0]]
    sender = Sender("gpu0@start", ["gpu0"])
    gpu_guard.start_sampler(sender=sender)
    # cancelled in worker_ready's own thread, before the consumer's loop fetches anything
    assert sender.cancelled == [("gpu0", threading.get_ident())] and sender.soon == []
    assert value("roller_worker_consuming", worker="gpu0@start", queue="gpu0") == 0
    assert value("roller_gpu_fenced", worker="gpu0@start", gpu="0", uuid=UUIDS[0],
                 reason="ecc_uncorrected") == 1


# -- roller status ---------------------------------------------------------------------------

def test_status_shows_each_gpu_beside_its_slot(fake: ModuleType) -> None:
    nvml = nvml_of(fake)
    assert gpu_cell(nvml, 0) == "87% 61C"
    assert gpu_cell(nvml, 1) == "0% 39C"
    assert gpu_cell(nvml, 5) == "no GPU 5"
    assert gpu_cell(nvml, None) == "-"
    fake.DEVICES[1]["ecc_uncorrected"] = 4
    assert gpu_cell(nvml, 1) == "FENCED ecc_uncorrected"
    text = render([SlotStatus("chunk-gpu0", "gpu0", "registered 5m", None, None, 0, "87% 61C"),
                   SlotStatus("batch-gpu1", "gpu1", "registered 5m", None, None, 0,
                              "FENCED ecc_uncorrected")], 0.0)
    header, first, second = text.splitlines()[1:]
    assert header.split()[:6] == ["SLOT", "QUEUE", "SESSION", "TASK", "STATE", "GPU"]
    assert first[header.index("GPU"):].startswith("87% 61C ")
    assert second[header.index("GPU"):].startswith("FENCED ecc_uncorrected ")
    plain = render([SlotStatus("chunk-gpu0", "gpu0", "registered", None, None, 0)], 0.0)
    assert "GPU" not in plain.splitlines()[1].split()  # no NVML: no column


# -- the worker's start check, for real ------------------------------------------------------

def _worker(tmp_path: Path, devices: list[dict[str, Any]] | None, visible: str
            ) -> subprocess.CompletedProcess[str]:
    cfg = {"roller_name": "gpu", "keystore_path": str(tmp_path / "keystore.json"),
           "keystore_password": "pw", "coordinator_url": "ws://127.0.0.1:9/",
           "trace_endpoint": "http://127.0.0.1:9/", "broker_url": "redis://127.0.0.1:9/0",
           "prover": {"params_path": str(tmp_path / "params")}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    env = python_env()
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["ROLLER_CONFIG"] = str(tmp_path / "config.json")
    env["PYTHONPATH"] = f"{FAKE_DIR}:{env.get('PYTHONPATH', '')}"
    env["CUDA_VISIBLE_DEVICES"] = visible
    if devices is not None:
        (tmp_path / "devices.json").write_text(json.dumps(devices))
        env["FAKE_NVML_DEVICES"] = str(tmp_path / "devices.json")
    celery = str(Path(sys.executable).with_name("celery"))
    return subprocess.run([celery, "-A", "roller", "worker", "-Q", "gpu0"], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_worker_refuses_a_gpu_index_that_does_not_exist(tmp_path: Path) -> None:
    out = _worker(tmp_path, [{"uuid": UUIDS[0]}, {"uuid": UUIDS[1]}], "5")
    assert out.returncode == 3, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["roller worker: GPU: CUDA_VISIBLE_DEVICES=5: GPU index 5 does not exist "
                     "(NVML sees 2 GPU(s): index 0-1)"]
