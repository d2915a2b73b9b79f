"""fashion.runtime.Classifier on a tiny real ONNX bundle and real sample photos."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from fashion import HEADS
from fashion.runtime import BackendUnavailableError, BundleError, Classifier, FashionError, InvalidImageError
from fashion.runtime.bundle import atomic_write_json, load_manifest
from fashion.runtime.classifier import choose_artifact
from fashion.runtime.hierarchy import LEVELS, HierarchyDecoder, consistency_effect
from fashion.runtime.preprocess import preprocess


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:12]


def run_by_hand(bundle: Path, tensor: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(bundle / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": tensor})))


def test_info_reports_what_runs(clf):
    info = clf.info
    assert info["backend"] == "onnxruntime"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["artifact"] == "onnx_fp32" and info["precision"] == "fp32"
    assert info["input_size"] == [32, 24]


def test_predictions_equal_onnxruntime_by_hand(clf, tiny_bundle, photos):
    tensor = np.stack([preprocess(p, 32, 24) for p in photos]).astype(np.float32)
    expected = run_by_hand(tiny_bundle, tensor)
    labels = json.loads((tiny_bundle / "labels.json").read_text())
    for row, photo in enumerate(photos):
        prediction = clf.predict(photo, top_k=len(labels["articleType"]))
        for head in HEADS:
            probs = expected[head][row]
            got = prediction.heads[head]
            assert got.index == int(np.argmax(probs))
            assert got.label == labels[head][got.index]
            assert got.confidence == pytest.approx(float(probs.max()), abs=1e-6)
        top = prediction.heads["articleType"].top_k
        assert [label for label, _ in top] == [labels["articleType"][i] for i in np.argsort(-expected["articleType"][row], kind="stable")]
    # the tiny model must not be constant, or the comparison above proves little
    assert len({tuple(clf.predict(p).labels().values()) for p in photos}) > 1


def test_every_input_kind_gives_the_same_answer(clf, photos):
    path = photos[0]
    reference = clf.predict(path).to_dict()["heads"]
    sources = [str(path), path.read_bytes(), Image.open(path), np.asarray(Image.open(path).convert("RGB"))]
    for source in sources:
        assert clf.predict(source).to_dict()["heads"] == reference


def test_to_dict_is_json_ready_and_top_k_sorted(clf, photos):
    prediction = clf.predict(photos[1], top_k=4)
    data = json.loads(json.dumps(prediction.to_dict()))
    assert set(data["heads"]) == set(HEADS)
    for head, result in data["heads"].items():
        probs = [p for _, p in result["top_k"]]
        assert len(probs) == min(4, len(clf.bundle.labels[head]))
        assert probs == sorted(probs, reverse=True)
        assert result["top_k"][0] == [result["label"], result["confidence"]]
    assert data["latency_ms"] > 0


def test_batch_equals_single_predictions(clf, photos):
    items = clf.predict_batch(photos, batch_size=5)
    assert [item.source for item in items] == [str(p) for p in photos]
    for item, photo in zip(items, photos):
        single = clf.predict(photo)
        assert item.ok and item.prediction.labels() == single.labels()
        for head in HEADS:
            assert item.prediction.heads[head].confidence == pytest.approx(single.heads[head].confidence, abs=1e-5)


def test_one_classifier_is_safe_from_many_threads(clf, photos):
    expected = {str(p): clf.predict(p).to_dict()["heads"] for p in photos}
    errors, results = [], []

    def worker():
        try:
            for p in photos:
                results.append((str(p), clf.predict(p).to_dict()["heads"]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4 * len(photos)
    for source, heads in results:
        for head in HEADS:
            assert heads[head]["index"] == expected[source][head]["index"]
            assert heads[head]["confidence"] == pytest.approx(expected[source][head]["confidence"], abs=1e-6)


def test_consistent_decoding_returns_a_known_combination(clf, photos):
    known = set(map(tuple, clf.bundle.hierarchy))
    for photo in photos:
        prediction = clf.predict(photo, consistent=True)
        assert prediction.consistent
        assert tuple(prediction.heads[level].label for level in LEVELS) in known


def test_hierarchy_decoder_maximises_the_joint_probability():
    labels = {"masterCategory": ["Apparel", "Footwear"], "subCategory": ["Shoes", "Topwear"],
              "articleType": ["Casual Shoes", "Shirts", "Tshirts"]}
    combos = [("Apparel", "Topwear", "Shirts"), ("Apparel", "Topwear", "Tshirts"),
              ("Footwear", "Shoes", "Casual Shoes"), ("Unknown", "Topwear", "Shirts")]
    decoder = HierarchyDecoder(combos, labels)
    assert len(decoder.table) == 3  # the combination naming an unknown class is dropped
    # argmaxes disagree: Footwear / Topwear / Shirts is not a real combination
    probs = {"masterCategory": np.array([[0.45, 0.55]]), "subCategory": np.array([[0.2, 0.8]]),
             "articleType": np.array([[0.1, 0.5, 0.4]])}
    # joint: Apparel/Topwear/Shirts = .45*.8*.5 = .18 ; Footwear/Shoes/Casual = .55*.2*.1 = .011
    assert decoder.decode(probs).tolist() == [[0, 1, 1]]
    truth = {"masterCategory": np.array([0]), "subCategory": np.array([1]), "articleType": np.array([-1])}
    effect = consistency_effect(probs, truth, decoder)
    assert effect["masterCategory"] == {"argmax": 0.0, "consistent": 1.0}
    assert effect["subCategory"] == {"argmax": 1.0, "consistent": 1.0}
    assert "articleType" not in effect  # no labelled rows, no number


def test_cam_matches_feature_map_times_head_weights(clf, tiny_bundle, photos):
    heat = clf.cam(photos[2], head="articleType")
    assert heat.shape == (32, 24) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() == pytest.approx(1.0, abs=1e-3)

    tensor = preprocess(photos[2], 32, 24)[None].astype(np.float32)
    outputs = run_by_hand(tiny_bundle, tensor)
    with np.load(tiny_bundle / "head_weights.npz", allow_pickle=False) as weights:
        kernel, bias = weights["articleType/kernel"], weights["articleType/bias"]
    features = outputs["feature_map"][0]
    # the weights are really the ones in the graph: pooled features through them give the head's output
    logits = features.mean(axis=(0, 1)) @ kernel + bias
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(softmax, outputs["articleType"][0], atol=1e-5)
    raw = np.maximum(features @ kernel[:, int(np.argmax(softmax))], 0)
    small = Image.fromarray((heat * 255).astype(np.uint8)).resize(raw.shape[::-1], Image.Resampling.BOX)
    assert np.corrcoef(np.asarray(small, dtype=float).ravel(), raw.ravel())[0, 1] > 0.9
    with pytest.raises(ValueError, match="unknown head"):
        clf.cam(photos[2], head="brand")


def test_artifact_choice(tiny_bundle, tmp_path):
    bundle = load_manifest(tiny_bundle)
    assert choose_artifact(bundle) == "onnx_fp32"
    with pytest.raises(BundleError, match="no onnx artifact for precision int8"):
        choose_artifact(bundle, precision="int8")
    with pytest.raises(BundleError, match="no tensorrt artifact"):
        choose_artifact(bundle, backend="tensorrt")
    with pytest.raises(ValueError):
        choose_artifact(bundle, backend="tflite")
    manifest = dict(bundle.manifest, default_artifact="onnx_int8")
    manifest["artifacts"] = dict(manifest["artifacts"], onnx_int8=dict(manifest["artifacts"]["onnx_fp32"], precision="int8"))
    atomic_write_json(tmp_path / "bundle.json", manifest)
    for name in ("labels.json",):
        (tmp_path / name).write_bytes((tiny_bundle / name).read_bytes())
    assert choose_artifact(load_manifest(tmp_path, verify_hashes=False)) == "onnx_int8"


def test_missing_provider_raises_unless_fallback_allowed(tiny_bundle):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal path needs a CPU-only onnxruntime")
    with pytest.raises(BackendUnavailableError, match=r"CUDAExecutionProvider.*fashion-edge\[gpu\]"):
        Classifier.load(tiny_bundle, providers=["cuda"])
    with Classifier.load(tiny_bundle, providers=["cuda"], allow_fallback=True) as fallback:
        assert fallback.info["providers"] == ["CPUExecutionProvider"]


def test_threads_and_graph_optimisation_are_settable(tiny_bundle, photos, clf):
    with Classifier.load(tiny_bundle, threads=1, graph_optimization="disable") as single:
        assert single.info["threads"] == 1
        assert single.predict(photos[0]).labels() == clf.predict(photos[0]).labels()
    with pytest.raises(ValueError, match="graph_optimization"):
        Classifier.load(tiny_bundle, graph_optimization="max")


def test_closed_classifier_refuses_work(tiny_bundle, photos):
    classifier = Classifier.load(tiny_bundle)
    classifier.close()
    classifier.close()  # idempotent
    with pytest.raises(FashionError, match="closed"):
        classifier.predict(photos[0])


def test_bad_image_in_predict_raises_typed_error(clf):
    with pytest.raises(InvalidImageError, match="not a recognised image format"):
        clf.predict(b"definitely not a photo")
