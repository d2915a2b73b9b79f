"""``import fashion.runtime`` (and preprocessing an image) must not pull in any training/export stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_MODULES = ("tensorflow", "keras", "tf2onnx", "tensorrt", "torch", "jax")

# Each snippet runs in a fresh interpreter; later runtime features add a snippet here.
SNIPPETS = {
    "import": "import fashion.runtime",
    "preprocess": "import fashion.runtime as rt\nimage = rt.preprocess(IMAGE, 128, 96)\nassert image.shape == (128, 96, 3)",
}


def _heavy_modules_after(code: str, image: str) -> list[str]:
    probe = (
        f"IMAGE = {image!r}\n{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_runtime_import_and_preprocess_stay_light(sample_dir):
    image = str(sorted((sample_dir / "images").glob("*.jpg"))[0])
    for name, code in SNIPPETS.items():
        assert _heavy_modules_after(code, image) == [], f"{name}: heavy modules imported"


def test_the_probe_would_notice_a_heavy_import(sample_dir):
    image = str(sorted((sample_dir / "images").glob("*.jpg"))[0])
    assert "json" not in HEAVY_MODULES
    leaked = _heavy_modules_after("import fashion.runtime\nimport keras", image)
    assert "keras" in leaked
