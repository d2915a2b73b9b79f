"""What this host can do: usable cores (cgroup quota and affinity) and the CPU's model and ISA flags.

The runtime makes its speed choices here, where the model runs, never from a file written on
another machine: how many threads to give the model and the decoders (without oversubscribing a
container's CPU quota), and the CPU facts that tag recorded timings and decide which of them describe
this host (model, and ISA flags such as the integer dot-product instructions AVX-512 VNNI, AVX-VNNI, AMX,
Arm's dot-product extension). Which artifact runs is decided in ``selection.py``, from measurements only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = "/proc/cpuinfo"
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"

#: x86 flags that give INT8 a fast integer dot product (VPDPBUSD / AMX tiles).
X86_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Arm "Features" that do the same (SDOT/UDOT; I8MM's SMMLA).
ARM_INT8_FLAGS = ("asimddp", "i8mm")
#: Flags recorded with timings and in reports: what decides how fast FP32 and INT8 run.
REPORTED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "bf16",
)


@dataclass(frozen=True)
class CpuFacts:
    """CPU model, architecture and the subset of ISA flags that matter for inference speed."""

    model: str
    arch: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def reported_flags(self) -> list[str]:
        return [flag for flag in REPORTED_FLAGS if flag in self.flags]

    @property
    def int8_flags(self) -> list[str]:
        """The integer dot-product flags of this CPU: timings of a CPU with the same ones may describe it."""
        wanted = ARM_INT8_FLAGS if self.is_arm else X86_INT8_FLAGS
        return [flag for flag in wanted if flag in self.flags]

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ("aarch64", "arm64") or self.arch.lower().startswith("arm")

    @property
    def fingerprint(self) -> str:
        """Short stable id of (model, arch, reported flags): keys cached choices and matches recorded timings."""
        text = "|".join([self.model, self.arch, ",".join(self.reported_flags)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"model": self.model, "arch": self.arch, "flags": self.reported_flags, "int8_flags": self.int8_flags}


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo text, keys in lower case (the one parser)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            fields.setdefault(key.lower(), value)
    return fields


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuFacts:
    """CpuFacts from the text of /proc/cpuinfo (x86 "model name"/"flags", Arm "CPU part"/"Features")."""
    fields = cpuinfo_fields(text)
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    arch = arch or _arch_from(fields, flags)
    model = fields.get("model name") or fields.get("hardware") or ""
    if not model and "cpu part" in fields:
        model = f"Arm implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    return CpuFacts(model=model or platform.processor() or arch, arch=arch, flags=flags)


def _arch_from(fields: dict[str, str], flags: frozenset[str]) -> str:
    if "features" in fields and "flags" not in fields or "asimd" in flags:
        return "aarch64"
    if "flags" in fields:
        return "x86_64"
    return platform.machine() or "unknown"


def cpu_facts(cpuinfo_path: str | os.PathLike = CPUINFO) -> CpuFacts:
    """This host's CpuFacts (platform values only when /proc/cpuinfo is missing, e.g. macOS)."""
    path = Path(cpuinfo_path)
    if path.is_file():
        return parse_cpuinfo(path.read_text(errors="replace"), arch=platform.machine() or None)
    return CpuFacts(model=platform.processor() or platform.machine(), arch=platform.machine(), flags=frozenset())


def cgroup_cpu_limit(
    cpu_max: str | os.PathLike = CGROUP_V2_CPU_MAX,
    v1_quota: str | os.PathLike = CGROUP_V1_QUOTA,
    v1_period: str | os.PathLike = CGROUP_V1_PERIOD,
) -> float | None:
    """The container's CPU quota in cores (cgroup v2 ``cpu.max``, else v1 cfs quota), None when unlimited."""
    try:
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = float(Path(v1_quota).read_text().strip())
        period_us = float(Path(v1_period).read_text().strip())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores(cpu_max: str | os.PathLike = CGROUP_V2_CPU_MAX) -> int:
    """Cores this process can really keep busy: min(affinity mask, cgroup quota rounded up), at least 1.

    ``os.cpu_count()`` reports the host's CPUs even inside a 2-CPU container or a taskset, which is
    how thread pools end up oversubscribed.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cpu_max)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit - 1e-6)))
    return max(1, cores)


def split_threads(model_threads: int, cores: int | None = None) -> tuple[int, bool]:
    """(decode threads, overlap) for a batch pipeline that never runs more threads than usable cores.

    When a core is left beside the model's threads, that many decoders work *while* the model runs
    (overlap). When the model already takes every core, decoding uses all cores *between* model
    calls instead: both phases then keep every core busy and never compete.
    """
    cores = usable_cores() if cores is None else max(1, cores)
    spare = cores - max(1, model_threads)
    return (spare, True) if spare >= 1 else (cores, False)


# -- the per-host cache of measured choices -------------------------------------------------------------------------

CHOICES_FILE = "choices.json"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/fashion-edge (default ~/.cache/fashion-edge): per-user, per-host, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fashion-edge"


def read_choices(path: Path | None = None) -> dict:
    """The cached choices ({key: record}); an unreadable or foreign file counts as empty (it is only a cache)."""
    path = path or cache_dir() / CHOICES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    choices = data.get("choices") if isinstance(data, dict) else None
    return choices if isinstance(choices, dict) else {}


def write_choice(key: str, record: dict, path: Path | None = None) -> Path:
    """Add one choice to the cache file, written atomically (temporary file + rename) so readers never see half."""
    path = path or cache_dir() / CHOICES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    choices = read_choices(path)
    choices[key] = record
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "choices": choices}, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
