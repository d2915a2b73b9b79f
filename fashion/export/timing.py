"""Timing facts: how fast an artifact ran on one named CPU, recorded on its manifest entry.

The exporter does not choose a default artifact for everyone (a choice made on the export machine
is wrong on a CPU without the same instructions). It records facts instead: each timed artifact's
entry gains a ``timings`` item tagged with the CPU model, the ISA flags that decide whether INT8
pays, the threads and the batch. The runtime chooses where it runs. A new timing replaces only an
earlier one of the same CPU, flags, threads and batch; timings from other machines are kept.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

#: The ISA flags that change which artifact is fastest (SIMD width, int8 dot products, matrix units).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "i8mm", "sve")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_facts(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """{"cpu": model name, "flags": sorted ISA flags of :data:`ISA_FLAGS` present} of this host."""
    model, flags = platform.processor() or platform.machine(), set()
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "Model Name") and model in ("", platform.machine(), platform.processor()):
                model = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return {"cpu": model, "flags": sorted(flags & set(ISA_FLAGS))}


def timing_fact(p50_ms: float, threads: int, batch: int = 1, images: int = 0) -> dict[str, Any]:
    """One timing record for this host (see the module docstring)."""
    return {**cpu_facts(), "threads": int(threads), "batch": int(batch), "p50_ms": round(float(p50_ms), 3),
            "images": int(images), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _same_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(key) == b.get(key) for key in ("cpu", "flags", "threads", "batch"))


def merge_timings(existing: list[dict[str, Any]] | None, fact: dict[str, Any]) -> list[dict[str, Any]]:
    """``existing`` with ``fact`` replacing only the timing of the same CPU, flags, threads and batch."""
    return [t for t in (existing or []) if not _same_setting(t, fact)] + [fact]
