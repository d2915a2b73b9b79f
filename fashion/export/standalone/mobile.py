"""ONNX Runtime Mobile: the ``.ort`` file and the operator list of a minimal build, by ONNX Runtime's own converter."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fashion.runtime.bundle import sha256_file
from fashion.runtime.manifest import ArtifactEntry

from ..errors import ExportError
from .graph import FEATURE_MAP, FILE, INPUT, KEY, OPS_FILE, OPSET, ORT_FILE, ORT_KEY


def convert_to_ort(model_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """The ``.ort`` file and the minimal-build operator config, by ONNX Runtime's own converter.

    Returns (ort_file, required_operators_config), both renamed to this module's FILE names in ``out_dir``.
    """
    with tempfile.TemporaryDirectory(prefix=".ort-", dir=out_dir) as tmp:
        work = Path(tmp)
        shutil.copyfile(model_path, work / "model.onnx")
        command = [
            sys.executable,
            "-m",
            "onnxruntime.tools.convert_onnx_models_to_ort",
            str(work / "model.onnx"),
            "--output_dir",
            str(work / "out"),
            "--optimization_style",
            "Fixed",
            "--enable_type_reduction",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        ort_files = sorted((work / "out").glob("*.ort"))
        configs = sorted((work / "out").glob("*.config"))
        if done.returncode != 0 or not ort_files or not configs:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise ExportError(f"onnxruntime's ORT converter failed (exit {done.returncode}): {' | '.join(tail)}")
        ort_path, ops_path = out_dir / ORT_FILE, out_dir / OPS_FILE
        shutil.move(str(ort_files[0]), ort_path)
        # The converter names its temporary input in a comment; name the shipped file instead.
        lines = [
            f"# - {ORT_FILE}" if line.startswith("# - ") else line
            for line in configs[0].read_text(encoding="utf-8").splitlines()
        ]
        ops_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ort_path, ops_path


def write_ort(
    root: Path, standalone_sha: str, fp32_sha: str, heads: list[str], log: Callable[[str], None] = print
) -> ArtifactEntry:
    """Convert the recorded standalone model to ``.ort`` and record it; returns its manifest entry."""
    from fashion.runtime.manifest import edit_manifest

    ort_path, ops_path = convert_to_ort(root / FILE, root)
    log(f"ORT Mobile: {ort_path} (+ {ops_path.name}, the operators of a minimal build)")
    with edit_manifest(root) as draft:
        entry = draft.put_artifact(
            ORT_KEY,
            {
                "file": ORT_FILE,
                "format": "ort",
                "precision": "fp32",
                "opset": OPSET,
                "input": INPUT,
                "outputs": {head: head for head in heads},
                "feature_map": FEATURE_MAP,
                "required_operators": {"file": OPS_FILE, "sha256": sha256_file(ops_path)},
                # Derived from the FP32 ONNX like the standalone model, so a new FP32 makes both stale at once.
                "source": {
                    "artifact": "onnx_fp32",
                    "sha256": fp32_sha,
                    "converted_from": {"artifact": KEY, "sha256": standalone_sha},
                },
            },
        )
    return entry


def discard_ort(root: Path) -> None:
    """Remove the ORT Mobile files and entry (derived from a standalone model that is being dropped)."""
    from fashion.runtime.manifest import edit_manifest

    with edit_manifest(root) as draft:
        draft.drop_artifact(ORT_KEY)
    for name in (ORT_FILE, OPS_FILE):
        (root / name).unlink(missing_ok=True)
