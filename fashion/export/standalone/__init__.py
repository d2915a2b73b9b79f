"""The standalone model: decoded RGB pixels of any size in, the six heads' probabilities out.

Apps that are not Python (Android, iOS, web pages, Node or Java back ends) should not have to
re-implement the preprocessing or read ``labels.json``: this artifact carries both. Built, gated and
recorded by ``fashion-export BUNDLE --standalone`` (``--standalone-only``: from the recorded FP32 ONNX
alone). One job per module:

* ``graph.py``: the preprocessing graph, its composition with the FP32 network, the metadata, the
  exact agreement limits with the runtime;
* ``gate.py``: agreement and accuracy against the Python runtime on real photos, as they are and upscaled;
* ``stage.py``: ``StandaloneStage``, the export driver's Stage (options on ``ExportOptions``);
* ``mobile.py``: the ``.ort`` file and operator list for ONNX Runtime Mobile;
* ``report.py``: results/standalone.{json,md} and the batch-1 latency table.
"""

from .gate import GateSet, gate_sets, judge, measure, open_standalone, run_gate
from .graph import (
    BATCH,
    FEATURE_MAP,
    FILE,
    FORMAT,
    INPUT,
    KEY,
    METADATA_KEY,
    NETWORK_INPUT,
    OPS_FILE,
    OPSET,
    ORT_FILE,
    ORT_KEY,
    PAD_VALUE,
    UPSCALED_IMAGES,
    UPSCALED_SIZE,
    build_file,
    build_standalone,
    entry_fields,
    preprocessing_graph,
    read_metadata,
    standalone_metadata,
)
from .mobile import convert_to_ort, discard_ort, write_ort
from .report import measure_latency, write_report
from .stage import StandaloneStage

__all__ = [
    "BATCH",
    "FEATURE_MAP",
    "FILE",
    "FORMAT",
    "INPUT",
    "KEY",
    "METADATA_KEY",
    "NETWORK_INPUT",
    "OPSET",
    "OPS_FILE",
    "ORT_FILE",
    "ORT_KEY",
    "PAD_VALUE",
    "UPSCALED_IMAGES",
    "UPSCALED_SIZE",
    "GateSet",
    "StandaloneStage",
    "build_file",
    "build_standalone",
    "convert_to_ort",
    "discard_ort",
    "entry_fields",
    "gate_sets",
    "judge",
    "measure",
    "measure_latency",
    "open_standalone",
    "preprocessing_graph",
    "read_metadata",
    "run_gate",
    "standalone_metadata",
    "write_ort",
    "write_report",
]
