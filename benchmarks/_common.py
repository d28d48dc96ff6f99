"""What every benchmark prints first: the machine and the library versions behind its figures."""

from __future__ import annotations

from typing import Any

from mnistlab.runs import library_versions, machine_info


def header() -> dict[str, Any]:
    """Print and return the machine (CPU, cores) and the versions of every library involved."""
    info = {**machine_info(), "versions": library_versions(extra=("jax", "torch", "onnxruntime"))}
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores, {info['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    return info
