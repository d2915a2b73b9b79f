"""Writing artifacts into a bundle: staged beside the target, renamed into place only once accepted."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILES = {
    "onnx_fp32": "model_fp32.onnx",
    "onnx_fp16": "model_fp16.onnx",
    "onnx_int8": "model_int8.onnx",
}


@contextmanager
def staged_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds, delete it if not.

    A gate that raises inside the block therefore leaves nothing behind, and a reader never sees a
    half-written file under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{final}: nothing was written to the staged file")
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
