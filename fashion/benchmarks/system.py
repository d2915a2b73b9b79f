"""What machine and software a benchmark really ran on (recorded in every result file)."""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from fashion.runtime.host import cpuinfo_fields, parse_cpuinfo

PACKAGES = (
    "fashion-edge",
    "numpy",
    "pillow",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "tensorrt",
    "matplotlib",
)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """CPU model, clock (MHz, as /proc/cpuinfo reports it), core count and the SIMD features that matter.

    /proc/cpuinfo is parsed by the runtime's one parser (``fashion.runtime.host``), so a result file and the
    runtime's artifact choice read the same CPU model and flags.
    """
    info = {
        "model": platform.processor() or platform.machine(),
        "mhz": None,
        "cores": available_cores(),
        "avx2": False,
        "avx512f": False,
        "fma": False,
        "avx512_vnni": False,
        "avx_vnni": False,
    }
    path = Path(cpuinfo_path)
    if path.is_file():
        text = path.read_text(errors="replace")
        fields, facts = cpuinfo_fields(text), parse_cpuinfo(text)
        info.update(
            model=fields.get("model name", info["model"]),
            vendor=fields.get("vendor_id"),
            family=fields.get("cpu family"),
            mhz=float(fields["cpu mhz"]) if re.match(r"^[\d.]+$", fields.get("cpu mhz", "")) else None,
            **{flag: flag in facts.flags for flag in ("avx2", "avx512f", "fma", "avx512_vnni", "avx_vnni")},
            isa_flags=facts.reported_flags,  # the flags the runtime's artifact choice reads
        )
    return info


def peak_fp32_gflops(cpu: dict) -> float | None:
    """Theoretical fp32 peak: cores x GHz x 2 FMA units x SIMD lanes x 2 flops per FMA."""
    if not cpu.get("mhz"):
        return None
    lanes = 16 if cpu.get("avx512f") else 8 if cpu.get("avx2") else 4
    return cpu["cores"] * cpu["mhz"] / 1000.0 * 2 * lanes * 2


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_average() -> list[float] | None:
    """1/5/15-minute load: other work on the machine while the benchmark ran shows up here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_summary() -> dict:
    return {
        "cpu": cpu_info(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "load_average_start": load_average(),
    }
