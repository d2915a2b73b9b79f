"""The small typed sections of bundle.json: ``InputSpec``, ``PreprocessSpec``, ``Timing``, ``SplitRecord``, and the
field checks (``_Where``) every section uses; ``schema.py`` builds ``ArtifactEntry`` and ``Manifest`` from them.

Each section is a frozen dataclass read with ``from_dict`` (BundleError naming the field) and written with
``to_dict``; keys a section does not type stay in its ``extra``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..errors import BundleError


class _Where:
    """Builds messages that name the manifest file and the field: ``<file>: artifacts.onnx_fp32 lacks 'file'``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str) -> BundleError:
        return BundleError(f"{self.source}: {message}")

    def mapping(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"'{name}' must be a JSON object, got {type(value).__name__}")
        return value

    def require(self, section: Mapping[str, Any], key: str, name: str) -> Any:
        if key not in section:
            raise self.error(f"{name} lacks '{key}'")
        return section[key]

    def positive_int(self, value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(f"{name} must be a positive integer, got {value!r}")
        return value

    def text(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(f"{name} must be a non-empty string, got {value!r}")
        return value

    def relative_file(self, value: Any, name: str) -> str:
        """A file name inside the bundle: relative, no '..', so a manifest cannot point outside its folder."""
        text = self.text(value, name)
        parts = PurePosixPath(text.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or (len(text) > 1 and text[1] == ":"):
            raise self.error(f"{name} {text!r} must be a file name inside the bundle")
        return text


# -- the typed sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """The model input: one float32 NHWC image tensor of ``height`` x ``width``."""

    height: int
    width: int
    name: str = "image"
    channels: int = 3
    layout: str = "NHWC"
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, data: Any, where: _Where) -> InputSpec:
        spec = where.mapping(data, "input")
        return cls(
            height=where.positive_int(where.require(spec, "height", "input"), "input.height"),
            width=where.positive_int(where.require(spec, "width", "input"), "input.width"),
            name=where.text(spec.get("name", "image"), "input.name"),
            channels=where.positive_int(spec.get("channels", 3), "input.channels"),
            layout=where.text(spec.get("layout", "NHWC"), "input.layout"),
            dtype=where.text(spec.get("dtype", "float32"), "input.dtype"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "layout": self.layout,
            "dtype": self.dtype,
        }


#: Keys of the ``preprocessing`` section with a typed field; any other key is kept in ``PreprocessSpec.extra``.
_PREPROCESS_KEYS = (
    "color",
    "exif_transpose",
    "fit",
    "pad_value",
    "resample",
    "dtype",
    "range",
    "layout",
    "mean",
    "std",
)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a photo becomes the input tensor; ``fashion.runtime.preprocess.build_preprocessor`` builds it from this.

    Every field is typed and checked here, once (``from_dict``); the defaults are the shipped spec. Whether
    this runtime implements a value (e.g. ``fit``, ``resample``) is for the preprocessor to say; keys this
    version does not know stay in ``extra`` (the preprocessor refuses them rather than ignore them).
    """

    color: str = "RGB"
    exif_transpose: bool = True
    fit: str = "pad_to_aspect_then_resize"
    #: One grey level, or one per RGB channel.
    pad_value: int | tuple[int, int, int] = 255
    resample: str = "bilinear"
    dtype: str = "float32"
    range: tuple[float, float] = (0, 255)
    layout: str = "NHWC"
    #: Per-channel normalisation after the range scaling (``(x - mean) / std``); None: none.
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    #: Keys this version does not know, kept so a newer writer's fields survive a round trip.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pad_rgb(self) -> tuple[int, int, int]:
        """The pad colour as one value per RGB channel."""
        pad = self.pad_value
        return (pad, pad, pad) if isinstance(pad, int) else pad

    @classmethod
    def from_dict(cls, data: Any, where: _Where | None = None) -> PreprocessSpec:
        """The typed spec of a ``preprocessing`` JSON object (absent keys take the shipped defaults)."""
        where = where or _Where("preprocessing spec")
        spec = dict(where.mapping(data, "preprocessing"))
        exif = spec.get("exif_transpose", True)
        if not isinstance(exif, bool):
            raise where.error(f"preprocessing.exif_transpose must be true or false, got {exif!r}")
        value_range = spec.get("range", [0, 255])
        if (
            not isinstance(value_range, (list, tuple))
            or len(value_range) != 2
            or not all(_is_number(v) for v in value_range)
            or not value_range[0] < value_range[1]
        ):
            raise where.error(
                f"preprocessing.range must be [low, high] with low < high (e.g. [0, 255] or [0, 1]), got {value_range!r}"
            )
        mean = spec.get("mean")
        std = spec.get("std")
        return cls(
            color=where.text(spec.get("color", "RGB"), "preprocessing.color"),
            exif_transpose=exif,
            fit=where.text(spec.get("fit", "pad_to_aspect_then_resize"), "preprocessing.fit"),
            pad_value=_pad_value(spec.get("pad_value", 255), where),
            resample=where.text(spec.get("resample", "bilinear"), "preprocessing.resample"),
            dtype=where.text(spec.get("dtype", "float32"), "preprocessing.dtype"),
            range=(value_range[0], value_range[1]),
            layout=where.text(spec.get("layout", "NHWC"), "preprocessing.layout"),
            mean=None if mean is None else _triple(mean, "preprocessing.mean", -math.inf, where),
            std=None if std is None else _triple(std, "preprocessing.std", 0.0, where),
            extra={k: v for k, v in spec.items() if k not in _PREPROCESS_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "color": self.color,
            "exif_transpose": self.exif_transpose,
            "fit": self.fit,
            "pad_value": self.pad_value if isinstance(self.pad_value, int) else list(self.pad_value),
            "resample": self.resample,
            "dtype": self.dtype,
            "range": list(self.range),
            "layout": self.layout,
        }
        if self.mean is not None:
            out["mean"] = list(self.mean)
        if self.std is not None:
            out["std"] = list(self.std)
        return {**out, **copy.deepcopy(self.extra)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pad_value(value: Any, where: _Where) -> int | tuple[int, int, int]:
    def grey(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255

    if grey(value):
        return int(value)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(grey(v) for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise where.error(f"preprocessing.pad_value must be an integer 0..255 (or 3 of them, RGB), got {value!r}")


def _triple(value: Any, name: str, above: float, where: _Where) -> tuple[float, float, float]:
    """A number or 3 numbers, each greater than ``above`` (std: > 0), as one value per RGB channel."""
    values = [value] * 3 if _is_number(value) else value
    if (
        not isinstance(values, (list, tuple))
        or len(values) != 3
        or not all(_is_number(v) and v > above for v in values)
    ):
        raise where.error(f"{name} must be a number or 3 numbers (RGB), each > {above:g}, got {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


_TIMING_KEYS = ("cpu", "flags", "threads", "batch", "p50_ms", "images", "measured_at", "load_average")


@dataclass(frozen=True)
class Timing:
    """A batch-``batch`` median latency (``p50_ms``) of one artifact, measured on a named CPU: a fact, not a choice.

    ``flags`` are the ISA flags the runtime matches timings on (``fashion.runtime.host.REPORTED_FLAGS``);
    timings of one export's timing run share ``cpu``, ``measured_at`` and ``threads``, so they can be compared.
    Optional fields are None when not recorded (and then not written).
    """

    cpu: str
    p50_ms: float
    flags: tuple[str, ...] | None = None
    threads: int | None = None
    batch: int | None = None
    images: int | None = None
    measured_at: str | None = None
    #: The host's load average when it was measured (timings of one run compare, across runs less so).
    load_average: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def same_setting(self, other: Timing) -> bool:
        """Same CPU, flags, threads and batch: a new timing of the same setting replaces the old one."""
        return (self.cpu, self.flags, self.threads, self.batch) == (other.cpu, other.flags, other.threads, other.batch)

    @property
    def run(self) -> tuple[str, str | None, int | None]:
        """(cpu, measured_at, threads): timings with the same run were measured together."""
        return self.cpu, self.measured_at, self.threads

    @classmethod
    def from_dict(cls, data: Any, name: str = "timing", where: _Where | None = None) -> Timing:
        where = where or _Where("timing")
        timing = where.mapping(data, name)
        for key in ("cpu", "p50_ms"):
            where.require(timing, key, name)
        p50 = timing["p50_ms"]
        if isinstance(p50, bool) or not isinstance(p50, (int, float)) or p50 < 0:
            raise where.error(f"{name}.p50_ms must be a non-negative number, got {p50!r}")
        flags = timing.get("flags")
        if flags is not None and (not isinstance(flags, list) or not all(isinstance(f, str) for f in flags)):
            raise where.error(f"{name}.flags must be a list of ISA flags")
        load = timing.get("load_average")
        if load is not None and (not isinstance(load, list) or not all(_is_number(v) for v in load)):
            raise where.error(f"{name}.load_average must be a list of numbers, got {load!r}")
        return cls(
            cpu=str(timing["cpu"]),
            p50_ms=float(p50),
            flags=None if flags is None else tuple(flags),
            threads=_optional_count(timing.get("threads"), f"{name}.threads", where),
            batch=_optional_count(timing.get("batch"), f"{name}.batch", where),
            images=_optional_count(timing.get("images"), f"{name}.images", where, minimum=0),
            measured_at=_optional_text(timing.get("measured_at"), f"{name}.measured_at", where),
            load_average=None if load is None else tuple(float(v) for v in load),
            extra={k: copy.deepcopy(v) for k, v in timing.items() if k not in _TIMING_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": self.cpu}
        if self.flags is not None:
            out["flags"] = list(self.flags)
        for key in ("threads", "batch"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["p50_ms"] = self.p50_ms
        for key in ("images", "measured_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.load_average is not None:
            out["load_average"] = list(self.load_average)
        return {**out, **copy.deepcopy(self.extra)}


def _optional_count(value: Any, name: str, where: _Where, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _optional_text(value: Any, name: str, where: _Where) -> str | None:
    return None if value is None else where.text(value, name)


@dataclass(frozen=True)
class SplitRecord:
    """The split file the model was trained with: its name (relative to the repository or the bundle) and sha256."""

    file: str
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: _Where | None = None) -> SplitRecord:
        where = where or _Where("split record")
        record = where.mapping(data, "split")
        digest = record.get("sha256")
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
            raise where.error(f"split.sha256 must be a sha256 hex digest, got {digest!r}")
        return cls(
            file=where.text(where.require(record, "file", "split"), "split.file"),
            sha256=digest,
            extra={k: copy.deepcopy(v) for k, v in record.items() if k not in ("file", "sha256")},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return {**out, **copy.deepcopy(self.extra)}
