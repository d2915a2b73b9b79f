"""Which artifact of a bundle runs on this host, and why: the policy behind ``precision="auto" | "fastest"``.

``auto`` decides from measurements only: the bundle's recorded batch-1 timings for this CPU (or another
CPU with the same integer dot-product instructions), else a ``fastest`` measurement made on this host and
cached; with none of them it runs FP32 and says the choice is assumed. It never claims INT8 pays from
the CPU's ISA flags alone (on a 2-core EPYC with AVX-512 VNNI, INT8 measured 1.07x slower than FP32).

``fastest`` times every candidate here once (batch 1) and caches the winner per bundle, CPU and threads
(``Classifier.load`` does the timing with the helpers below).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from .bundle import Bundle
from .errors import BundleError
from .host import CpuFacts, cpu_facts, read_choices, usable_cores
from .manifest import Timing
from .preprocess import Preprocessor

PRECISIONS = ("fp32", "fp16", "int8")
#: ``auto``: decided from timings measured for this host (recorded or cached), FP32 otherwise;
#: ``fastest``: measured here once, cached.
PRECISION_CHOICES = ("auto", "fastest") + PRECISIONS
#: ``auto`` runs INT8 instead of FP32 only when a measurement shows INT8 at least this much faster: a tie
#: within measurement noise keeps FP32, the accuracy reference.
INT8_MIN_GAIN = 0.05
#: Batch-1 calls timed per candidate by ``precision="fastest"`` (after a few untimed ones).
FASTEST_CALLS = 30
FASTEST_WARMUP = 5


@dataclass(frozen=True)
class ArtifactChoice:
    """Which artifact runs and why (shown in ``Classifier.info`` and by ``fashion-predict``)."""

    artifact: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"artifact": self.artifact, "reason": self.reason}


def _format_for(backend: str) -> str:
    if backend not in ("auto", "onnxruntime", "tensorrt"):
        raise ValueError(f"backend must be auto, onnxruntime or tensorrt, got {backend!r}")
    return "tensorrt" if backend == "tensorrt" else "onnx"


def _candidates(bundle: Bundle, fmt: str) -> list[str]:
    """Artifact keys of format ``fmt`` in precision order fp32, fp16, int8 (the ones the bundle has)."""
    artifacts = bundle.artifacts
    return [key for key in (f"{fmt}_{p}" for p in PRECISIONS) if key in artifacts and artifacts[key].format == fmt]


def _missing(bundle: Bundle, fmt: str, precision: str) -> BundleError:
    return BundleError(
        f"{bundle.root}: no {fmt} artifact for precision {precision} "
        f"(bundle has: {', '.join(bundle.artifacts) or 'none'}; build one with fashion-export)"
    )


def recorded_pair(bundle: Bundle, cpu: CpuFacts, threads: int | None = None) -> tuple[float, float, str] | None:
    """(fp32 ms, int8 ms, where) from the batch-1 timings that best describe this host, else None.

    Only timings measured together are compared (same CPU, time and threads: one export's timing run).
    Preference: this exact CPU (model, and its recorded ISA flags) before another CPU with the same integer
    dot-product instructions; within each, the same threads before other thread counts; then the latest.
    """
    fp32_entry, int8_entry = bundle.artifacts["onnx_fp32"], bundle.artifacts["onnx_int8"]

    def usable(timing: Timing) -> bool:
        return timing.batch in (None, 1)

    fp32_by = {t.run: t.p50_ms for t in fp32_entry.timings if usable(t)}
    best: tuple[tuple[bool, bool, str], float, float, Timing] | None = None
    for timing in int8_entry.timings:
        if not usable(timing) or timing.run not in fp32_by:
            continue
        flags = set(timing.flags or ())
        same_cpu = timing.cpu == cpu.model and flags <= set(cpu.reported_flags)
        same_class = bool(cpu.int8_flags) and replace(cpu, flags=frozenset(flags)).int8_flags == cpu.int8_flags
        if not (same_cpu or same_class):
            continue
        same_threads = not threads or not timing.threads or timing.threads == threads
        rank = (same_cpu, same_threads, timing.measured_at or "")
        if best is None or rank > best[0]:
            best = (rank, fp32_by[timing.run], timing.p50_ms, timing)
    if best is None:
        return None
    (same_cpu, same_threads, _), fp32, int8, timing = best
    if same_cpu:
        where = f"timings recorded on this CPU ({cpu.model})"
    else:
        where = f"timings recorded on another CPU with {', '.join(cpu.int8_flags)} ({timing.cpu})"
    if not same_threads:
        where += f" with {timing.threads} threads"
    return fp32, int8, where


def cached_pair(
    bundle: Bundle, candidates: list[str], cpu: CpuFacts, threads: int, choices: dict | None = None
) -> tuple[float, float, str] | None:
    """(fp32 ms, int8 ms, where) from a ``precision="fastest"`` measurement cached on this host, else None."""
    choices = read_choices() if choices is None else choices
    record = choices.get(choice_cache_key(bundle, candidates, cpu, threads))
    p50 = record.get("p50_ms") if isinstance(record, dict) else None
    if not isinstance(p50, dict) or not all(isinstance(p50.get(k), (int, float)) for k in ("onnx_fp32", "onnx_int8")):
        return None
    assert isinstance(record, dict)
    where = f"timings measured on this host by precision='fastest' ({record.get('measured_at')})"
    return float(p50["onnx_fp32"]), float(p50["onnx_int8"]), where


def select_artifact(
    bundle: Bundle,
    backend: str = "auto",
    precision: str = "auto",
    cpu: CpuFacts | None = None,
    threads: int | None = None,
    choices: dict | None = None,
) -> ArtifactChoice:
    """The artifact to run for ``precision`` on this host, and the reason (``fastest`` is resolved by ``load``).

    ``auto`` on the CPU: the bundle's ``pinned_artifact`` if an operator set one; else, when both FP32
    and INT8 exist, a measurement: the recorded timings (``recorded_pair``: this exact CPU, else another
    CPU with the same integer dot-product instructions), else a ``fastest`` measurement cached on this host
    (``choices``: the cache's records, read from $XDG_CACHE_HOME when None). INT8 runs only if measured
    at least ``INT8_MIN_GAIN`` faster. Unmeasured: FP32, and the reason says it is assumed. The exporter's
    own choice is never consulted: it was made on another machine.
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    fmt = _format_for(backend)
    if precision in PRECISIONS:
        key = f"{fmt}_{precision}"
        if key not in _candidates(bundle, fmt):
            raise _missing(bundle, fmt, precision)
        return ArtifactChoice(key, f"precision {precision} requested")
    pinned = bundle.manifest.pinned_artifact
    if pinned and pinned in bundle.artifacts and bundle.artifacts[pinned].format == fmt:
        return ArtifactChoice(pinned, "pinned_artifact in bundle.json")
    candidates = _candidates(bundle, fmt)
    if not candidates:
        raise _missing(bundle, fmt, precision)
    if len(candidates) == 1:
        return ArtifactChoice(candidates[0], f"the bundle's only {fmt} artifact")
    if fmt != "onnx" or not {"onnx_fp32", "onnx_int8"} <= set(candidates):
        return ArtifactChoice(candidates[0], f"first {fmt} artifact in fp32, fp16, int8 order")
    cpu = cpu or cpu_facts()
    measured = recorded_pair(bundle, cpu, threads) or cached_pair(
        bundle, candidates, cpu, threads or usable_cores(), choices
    )
    if measured is not None:
        fp32, int8, where = measured
        pays = int8 <= fp32 * (1 - INT8_MIN_GAIN)
        verdict = "INT8 pays" if pays else f"INT8 not at least {INT8_MIN_GAIN:.0%} faster, FP32 kept"
        return ArtifactChoice(
            "onnx_int8" if pays else "onnx_fp32",
            f"{where}: int8 {int8:.2f} ms, fp32 {fp32:.2f} ms at batch 1 ({verdict})",
        )
    return ArtifactChoice(
        "onnx_fp32",
        f"no FP32/INT8 timing for this CPU ({cpu.model}): FP32 assumed, INT8 unmeasured here "
        "(precision='fastest' measures both once; auto then follows it)",
    )


def choose_artifact(bundle: Bundle, backend: str = "auto", precision: str = "auto") -> str:
    """The manifest key of the artifact to run (see :func:`select_artifact`; ``fastest`` behaves as ``auto``)."""
    return select_artifact(bundle, backend, "auto" if precision == "fastest" else precision).artifact


def _bundle_sha(bundle: Bundle, keys: list[str]) -> str:
    text = ";".join(f"{key}={bundle.artifacts[key].sha256}" for key in sorted(keys))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def choice_cache_key(bundle: Bundle, keys: list[str], cpu: CpuFacts, threads: int) -> str:
    """(bundle sha, cpu model, flags, threads): a measured winner is reused only where it was measured."""
    return "|".join([_bundle_sha(bundle, keys), cpu.model, ",".join(cpu.reported_flags), f"threads={threads}"])


def timing_sample(preprocessor: Preprocessor) -> np.ndarray:
    """A deterministic product-photo-like input (garment on white) for timing when no photo is given.

    The network's cost does not depend on pixel values, but INT8 kernels see realistic ranges this way.
    """
    rng = np.random.default_rng(0)
    height, width = 4 * preprocessor.height, 4 * preprocessor.width
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    top, left = height // 6, width // 5
    image[top : height - top, left : width - left] = rng.integers(40, 200, 3, dtype=np.uint8)
    noise = rng.integers(-20, 20, (height - 2 * top, width - 2 * left, 3))
    image[top : height - top, left : width - left] = np.clip(
        image[top : height - top, left : width - left] + noise, 0, 255
    )
    return preprocessor(image)


def _timings_text(timings: dict[str, float]) -> str:
    return ", ".join(f"{key} {ms:.2f} ms" for key, ms in sorted(timings.items(), key=lambda kv: kv[1])) + " at batch 1"
