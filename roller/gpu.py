"""GPU pinning: a worker consuming queue gpuK sees only GPU K.

Connected to `celeryd_init`, which fires in the worker's parent before any pool child
exists, so children inherit the environment and the prover library (loaded lazily in the
child on its first job) never sees another GPU.
"""

from __future__ import annotations

import os
import re
from typing import Any

from celery import signals

GPU_QUEUE = re.compile(r"^gpu(\d+)$")


def gpu_of_queues(queues: list[str]) -> str | None:
    gpus = [m.group(1) for m in (GPU_QUEUE.match(q.strip()) for q in queues) if m]
    return gpus[0] if len(gpus) == 1 else None


@signals.celeryd_init.connect
def pin_gpu(sender: Any = None, conf: Any = None, options: Any = None, **_: Any) -> None:
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    os.environ["ROLLER_WORKER_QUEUES"] = ",".join(queues)
    gpu = gpu_of_queues(list(queues))
    if gpu is not None:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", gpu)
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
