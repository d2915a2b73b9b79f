"""The two shipped bundles: the single model (``models/fashion-effnetb0``, the fast one) and the duo
(``models/fashion-effnetb0-duo``: the single model averaged with a second lineage, one ONNX graph). Both load verified through the runtime and agree on their vocabulary; the duo carries
the record of how it was built and gated, and the val numbers its ship rule was judged on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashion import HEADS

ROOT = Path(__file__).resolve().parents[2]
DUO = ROOT / "models" / "fashion-effnetb0-duo"


@pytest.fixture(scope="module")
def duo() -> Path:
    if not (DUO / "bundle.json").is_file():
        pytest.skip(f"no duo bundle at {DUO}")
    return DUO


def _mean_val(manifest: dict) -> float:
    return float(np.mean([manifest["metrics"]["val"]["heads"][h]["accuracy"] for h in HEADS]))


def test_the_duo_is_built_from_the_shipped_model_and_a_second_lineage(duo, shipped_bundle):
    duo_manifest = json.loads((duo / "bundle.json").read_text())
    single = json.loads((shipped_bundle / "bundle.json").read_text())
    assert duo_manifest["name"] == "fashion-effnetb0-duo" != single["name"]
    assert json.loads((duo / "labels.json").read_text()) == json.loads((shipped_bundle / "labels.json").read_text())
    assert duo_manifest["input"] == single["input"]
    members = duo_manifest["training"]["members"]
    assert [m["flip"] for m in members] == [False, False]
    assert members[0]["keras"]["sha256"] == single["artifacts"]["keras"]["sha256"], "member 1 is the shipped model"
    assert members[1]["training"]["recipe"] == "gpu" and members[1]["training"]["sharp_train_images"] > 0
    # the FP32 ONNX passed its parity gate against the Keras graph
    parity = duo_manifest["artifacts"]["onnx_fp32"]["parity"]
    assert parity["images"] >= 256
    assert all(parity["heads"][h]["max_abs_diff"] <= parity["atol"] for h in HEADS)
    # the ship rule's thumbnail part, on the val numbers each bundle records: +0.5 pp on the six-head mean
    assert _mean_val(duo_manifest) >= _mean_val(single) + 0.005
    # its test report, on thumbnails, sharp copies and other shops' photos, is recorded (docs/eval/)
    assert {"test", "test-sharp", "other-shops", "other-shops-product"} <= set(duo_manifest["metrics"])


def test_both_bundles_load_verified_and_mostly_agree_on_real_photos(duo, shipped_bundle, sample_dir):
    from fashion.runtime.classifier import Classifier

    photos = sorted((sample_dir / "images").glob("*.jpg"))[:24]
    with Classifier.load(duo) as accurate, Classifier.load(shipped_bundle) as fast:
        assert accurate.artifact == "onnx_fp32"
        both = [(accurate.predict(p), fast.predict(p)) for p in photos]
        # class-activation maps come from the first member's feature map and head weights (the single model's)
        cam = accurate.cam(photos[0])
        assert cam.shape == (128, 96) and float(cam.max()) == pytest.approx(1.0) and float(cam.min()) >= 0.0
    for a, _ in both:
        assert set(a.heads) == set(HEADS)
        for head in HEADS:
            top = [p for _, p in a.heads[head].top_k]
            assert 0.0 < a.heads[head].confidence <= 1.0 + 1e-6 and top == sorted(top, reverse=True)
            assert sum(top) <= 1.0 + 1e-4
    agree = np.mean([a.heads["masterCategory"].label == f.heads["masterCategory"].label for a, f in both])
    assert agree >= 0.9, f"masterCategory agreement {agree:.2f} between the two shipped bundles"
