"""What the stages of one export run share: its options (``ExportOptions``), its result and the context.

Kept apart from the driver (``pipeline.py``) so that stages can name the context without importing the
driver that runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fashion.data.cli_options import DataChoice
from fashion.runtime.bundle import Bundle, load_bundle
from fashion.runtime.manifest import ArtifactEntry

from . import gates
from .artifacts import FILES
from .errors import ExportError
from .runner import run_model

DEFAULT_OUT = Path("build") / "triton"
DEFAULT_CACHE = Path("build") / "tensorrt-cache"

Log = Callable[[str], None]


@dataclass
class ExportOptions:
    """Everything an export run can be asked to do (the CLI maps its flags onto this one object)."""

    fp16: bool = False
    int8: bool = False
    tensorrt: bool = False
    triton: bool = False
    standalone: bool = False
    out: Path = DEFAULT_OUT
    cache_dir: Path = DEFAULT_CACHE
    opset: int = 17
    max_batch: int = 32
    parity_images: int = gates.PARITY_IMAGES
    parity_atol: float = gates.PARITY_ATOL
    fp16_min_agreement: float = gates.FP16_MIN_AGREEMENT
    calib_images: int = gates.CALIBRATION_IMAGES
    eval_images: int = gates.EVAL_IMAGES
    max_drop_pp: float = gates.INT8_MAX_DROP_PP
    data_dir: Path | None = None
    split_file: Path | None = None
    report_accuracy: bool = False
    timings: bool = True
    threads: int | None = None
    force: bool = False
    progress: bool = True
    #: ``--standalone-only``: build, gate and record the standalone model from the recorded FP32 ONNX alone.
    standalone_only: bool = False
    #: Standalone gate: test photos (0 = all) and, of those, how many also run upscaled to 1080x1440 (0 = all).
    standalone_images: int = gates.STANDALONE_IMAGES
    standalone_upscaled_images: int = gates.STANDALONE_UPSCALED_IMAGES
    #: Also the .ort file and operator list for ONNX Runtime Mobile.
    standalone_ort: bool = True
    #: Write the standalone gate's table (and batch-1 latency) to DIR/standalone.{json,md}.
    standalone_report: Path | None = None
    standalone_latency_images: int = 30
    #: The command line that asked for this run, quoted in reports.
    command: str = ""

    def __post_init__(self) -> None:
        if self.standalone_only:
            self.standalone = True

    def data_choice(self, bundle: Bundle) -> DataChoice:
        """``--data`` / ``--split-file`` as the shared option group resolves them, with ``bundle``'s recorded
        split file: ``resolved_split_file()`` is ``--split-file``, else the bundle's, else the committed default."""
        return DataChoice(data_dir=self.data_dir, split_file=self.split_file).with_bundle(bundle)


@dataclass
class ExportResult:
    #: The artifacts recorded in this run, as the manifest holds them now.
    written: dict[str, ArtifactEntry] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    triton_models: list[Path] = field(default_factory=list)


class ExportContext:
    """What the stages of one run share: the bundle, options, images (loaded once, lazily) and references."""

    def __init__(self, root: Path, options: ExportOptions, log: Log):
        self.root, self.options, self.log = root, options, log
        self.bundle: Bundle = load_bundle(root)  # verifies every recorded sha256 before any work
        self.result = ExportResult()
        self.heads = self.bundle.heads
        self.height, self.width = self.bundle.input_size
        #: The artifacts recorded before this run (facts about the same bytes are carried over).
        self.previous: dict[str, ArtifactEntry] = dict(self.bundle.artifacts)
        keras = self.bundle.artifacts.get("keras")
        self.keras_file: str = keras.file if keras else "model.keras"
        if not options.standalone_only and not (root / self.keras_file).is_file():
            raise ExportError(f"{root / self.keras_file}: no Keras model to export (the bundle's training output)")
        self._fp32_entry: ArtifactEntry | None = None
        self.fp32_reference: dict[str, np.ndarray] = {}
        self.tensorrt_ok, self.tensorrt_reason = False, ""

    @property
    def fp32_path(self) -> Path:
        return self.root / FILES["onnx_fp32"]

    @property
    def fp32_entry(self) -> ArtifactEntry:
        """The FP32 ONNX entry this run verified or recorded, which every derived artifact is checked against."""
        if self._fp32_entry is None:
            raise ExportError("the FP32 ONNX is not recorded yet in this run")
        return self._fp32_entry

    @fp32_entry.setter
    def fp32_entry(self, entry: ArtifactEntry) -> None:
        self._fp32_entry = entry

    # -- images: the one place the export reads the dataset --------------------------------------------
    @cached_property
    def _data(self) -> Any:
        from fashion.data.images import LabelledData

        choice = self.options.data_choice(self.bundle)
        data_dir, split_file = choice.resolved_data_dir(), choice.resolved_split_file()
        self.log(f"images: {data_dir} (split file {split_file})")
        return LabelledData.open(
            data_dir,
            split_file,
            self.bundle.labels,
            (self.height, self.width),
            progress=self.options.progress,
            preprocessor=self.bundle.preprocessor(),
        )

    def images(self, split: str, limit: int | None, fill_from: tuple[str, ...] = (), desc: str = "") -> Any:
        """Readable labelled images of ``split`` (``.batch()`` float32 NHWC, ``.labels`` {head: int, -1 unknown})."""
        return self._data.images(split, limit, fill_from=fill_from, desc=desc or f"{split} images")

    @cached_property
    def parity_batch(self) -> np.ndarray:
        parity = self.images("val", self.options.parity_images, fill_from=("test", "train"), desc="parity images")
        if len(parity) < self.options.parity_images:
            raise ExportError(
                f"only {len(parity)} readable images for the parity gate, "
                f"need {self.options.parity_images} (check --data and --split-file)"
            )
        return parity.batch()

    @cached_property
    def calibration(self) -> Any:
        images = self.images("train", self.options.calib_images, desc="calibration images (train)")
        if len(images) == 0:
            raise ExportError("INT8: no training images to calibrate on (check --data and --split-file)")
        return images

    @cached_property
    def val(self) -> Any:
        images = self.images("val", self.options.eval_images or None, desc="gate images (val)")
        if len(images) == 0:
            raise ExportError("no val images for the accuracy gate (check --data and --split-file)")
        return images

    # -- references ----------------------------------------------------------------------------------
    @cached_property
    def keras_reference(self) -> dict[str, np.ndarray]:
        """Keras's probabilities on the parity images, run through the ``keras`` backend."""
        path = self.root / self.keras_file
        entry = self.previous.get("keras") or ArtifactEntry.for_file(path, {"format": "keras"})
        return run_model(path, entry, self.parity_batch)

    @cached_property
    def fp32_val_accuracy(self) -> dict[str, dict[str, Any]]:
        probabilities = run_model(self.fp32_path, self.fp32_entry, self.val.batch())
        return gates.head_accuracy(probabilities, self.val.labels, self.heads)
