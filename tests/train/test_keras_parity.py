"""With the shipped bundle: the runtime's predictions equal the Keras model's on real photos (FP32, <= 1e-4).

Skips when models/fashion-effnetb0 is absent. Keras is loaded here (safe_mode) only to compare; the
runtime itself never imports it (see tests/runtime/test_isolation.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from fashion.runtime import Classifier
from fashion.runtime.preprocess import to_batch

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def photos(sample_dir):
    return sorted((sample_dir / "images").glob("*.jpg"))[:16]


def test_runtime_equals_keras_on_real_photos(shipped_bundle, photos):
    if not (shipped_bundle / "model.keras").is_file():
        pytest.skip("shipped bundle has no model.keras to compare with")
    pytest.importorskip("keras", reason="Keras (the [train] extra) is needed to compare with the Keras model")
    from fashion.layers import load_keras_model  # the project's layers registered, safe mode

    with Classifier.load(shipped_bundle, backend="onnxruntime", precision="fp32") as clf:
        tensor = to_batch([clf.preprocess(p) for p in photos])
        runtime = clf.infer(tensor)
        predictions = [clf.predict(p, top_k=1) for p in photos]
        heads, labels = clf.heads, clf.bundle.labels

    model = load_keras_model(shipped_bundle / "model.keras")
    expected = model(tensor, training=False)
    for head in heads:
        reference = np.asarray(expected[head])
        assert runtime[head].shape == reference.shape
        difference = float(np.abs(runtime[head] - reference).max())
        assert difference <= TOLERANCE, f"{head}: max abs difference {difference:.2e} > {TOLERANCE}"
        for row, prediction in enumerate(predictions):
            assert prediction.heads[head].label == labels[head][int(np.argmax(reference[row]))]
            assert abs(prediction.heads[head].confidence - float(reference[row].max())) <= TOLERANCE
