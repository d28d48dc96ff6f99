"""What every benchmark prints first: the machine and the library versions behind its figures."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab.runs import library_versions, machine_info


def header() -> dict[str, Any]:
    """Print and return the machine (CPU, cores) and the versions of every library involved."""
    extra = ("jax", "torch", "onnxruntime", "tf2onnx", "pillow", "scipy", "fastapi", "uvicorn")
    info = {**machine_info(), "versions": library_versions(extra=extra)}
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores, {info['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    return info


def timed(call: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds each of `repeats` calls of `call` took, one after the other."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def inference(model: Any, x: np.ndarray) -> dict[str, float]:
    """Images/s at batch 1024 over x, and the median latency of one image (predict_on_batch)."""
    model.predict(x[:1024], batch_size=1024, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=1024, verbose=0)
    batch_rate = len(x) / (time.perf_counter() - start)
    one = x[:1]
    model.predict_on_batch(one)
    latencies = timed(lambda: model.predict_on_batch(one), 200)
    return {"batch1024_img_s": round(batch_rate), "single_image_ms": round(statistics.median(latencies) * 1e3, 3)}
