"""Timing facts: how fast an artifact ran on one named CPU, recorded on its manifest entry.

The exporter does not choose a default artifact for everyone (a choice made on the export machine
is wrong on a CPU without the same instructions). It records facts instead: each timed artifact's
entry gains a ``timings`` item (a typed ``fashion.runtime.manifest.Timing``) tagged with the CPU model, the ISA flags that decide whether INT8
pays, the threads and the batch. The runtime chooses where it runs. A new timing replaces only an
earlier one of the same CPU, flags, threads and batch; timings from other machines are kept.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fashion.runtime import host
from fashion.runtime.manifest import Timing


def available_cores() -> int:
    """Cores this process may use (affinity mask and cgroup CPU quota), as the runtime counts them."""
    return host.usable_cores()


def cpu_facts(cpuinfo: str | os.PathLike[str] = host.CPUINFO) -> dict[str, Any]:
    """{"cpu": model name, "flags": the ISA flags the runtime matches timings on} of this host.

    The same reading of /proc/cpuinfo as ``fashion.runtime.host``, so a timing recorded here is
    found by the runtime's host-aware choice on the same CPU.
    """
    facts = host.cpu_facts(cpuinfo)
    return {"cpu": facts.model, "flags": list(facts.reported_flags)}


def timing_fact(p50_ms: float, threads: int, batch: int = 1, images: int = 0) -> Timing:
    """One timing record for this host (see the module docstring)."""
    facts = host.cpu_facts()
    try:  # other work on the CPU shows up here: compare timings of one run with each other, not across runs
        load: tuple[float, ...] | None = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:  # pragma: no cover - not available on this platform
        load = None
    return Timing(
        cpu=facts.model,
        flags=tuple(facts.reported_flags),
        threads=int(threads),
        batch=int(batch),
        p50_ms=round(float(p50_ms), 3),
        images=int(images),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        load_average=load,
    )


def merge_timings(existing: list[Timing] | None, fact: Timing) -> list[Timing]:
    """``existing`` with ``fact`` replacing only the timing of the same CPU, flags, threads and batch."""
    return [t for t in (existing or []) if not t.same_setting(fact)] + [fact]
