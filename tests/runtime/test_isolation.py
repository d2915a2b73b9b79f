"""The runtime imports, loads a bundle and predicts without TensorFlow, Keras, tf2onnx or TensorRT."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from fashion.runtime import Classifier
with Classifier.load(sys.argv[1]) as clf:
    prediction = clf.predict(sys.argv[2])
    batch = clf.predict_batch([sys.argv[2], b"not an image"])
    heat = clf.cam(sys.argv[2])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf2onnx", "tensorrt", "onnx", "pandas", "torch"})
print(json.dumps({"labels": prediction.labels(), "batch_ok": [i.ok for i in batch], "heavy": heavy}))
"""


def test_runtime_never_imports_training_or_export_packages(tiny_bundle, sample_dir):
    photo = sorted((sample_dir / "images").glob("*.jpg"))[0]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle), str(photo)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["labels"]) == 6
    assert report["batch_ok"] == [True, False]
    assert report["heavy"] == []
