"""fashion.runtime.Classifier on a tiny real ONNX bundle and real sample photos."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from fashion import HEADS
from fashion.runtime import BackendUnavailableError, BundleError, Classifier, FashionError, InvalidImageError
from fashion.runtime.bundle import atomic_write_json, load_manifest, record_artifact
from fashion.runtime.hierarchy import LEVELS, HierarchyDecoder, consistency_effect
from fashion.runtime.host import parse_cpuinfo, usable_cores
from fashion.runtime.preprocess import preprocess
from fashion.runtime.selection import ArtifactChoice, choose_artifact, select_artifact


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
    assert info["artifact_choice"] == {"artifact": "onnx_fp32", "reason": "the bundle's only onnx artifact"}


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
        assert [label for label, _ in top] == [
            labels["articleType"][i] for i in np.argsort(-expected["articleType"][row], kind="stable")
        ]
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
    labels = {
        "masterCategory": ["Apparel", "Footwear"],
        "subCategory": ["Shoes", "Topwear"],
        "articleType": ["Casual Shoes", "Shirts", "Tshirts"],
    }
    combos = [
        ("Apparel", "Topwear", "Shirts"),
        ("Apparel", "Topwear", "Tshirts"),
        ("Footwear", "Shoes", "Casual Shoes"),
        ("Unknown", "Topwear", "Shirts"),
    ]
    decoder = HierarchyDecoder(combos, labels)
    assert len(decoder.table) == 3  # the combination naming an unknown class is dropped
    # argmaxes disagree: Footwear / Topwear / Shirts is not a real combination
    probs = {
        "masterCategory": np.array([[0.45, 0.55]]),
        "subCategory": np.array([[0.2, 0.8]]),
        "articleType": np.array([[0.1, 0.5, 0.4]]),
    }
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
    assert select_artifact(bundle).reason == "the bundle's only onnx artifact"
    with pytest.raises(BundleError, match="no onnx artifact for precision int8"):
        choose_artifact(bundle, precision="int8")
    with pytest.raises(BundleError, match="no tensorrt artifact"):
        choose_artifact(bundle, backend="tensorrt")
    with pytest.raises(ValueError):
        choose_artifact(bundle, backend="tflite")
    with pytest.raises(ValueError, match="precision"):
        choose_artifact(bundle, precision="int4")


# -- host-aware choice between FP32 and a real INT8 artifact -------------------------------------------------------

XEON = parse_cpuinfo(
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 fma avx512f avx512_vnni amx_int8\n"
)
EPYC = parse_cpuinfo("model name\t: AMD EPYC 7B12\nflags\t\t: avx2 fma\n")
GRAVITON = parse_cpuinfo("Features\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")
CORTEX = parse_cpuinfo("Features\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n")


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle plus a real INT8 artifact (dynamically quantised convolutions and Gemms)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = tmp_path_factory.mktemp("int8_bundle")
    for path in tiny_bundle.iterdir():
        shutil.copy2(path, root / path.name)
    quantize_dynamic(str(root / "model_fp32.onnx"), str(root / "model_int8.onnx"), weight_type=QuantType.QUInt8)
    entry = load_manifest(root, verify_hashes=False).artifacts["onnx_fp32"]
    meta = {k: v for k, v in entry.to_dict().items() if k not in ("file", "sha256", "bytes", "precision")}
    record_artifact(root, "onnx_int8", "model_int8.onnx", **meta, precision="int8")
    return root


def with_manifest(bundle: Path, tmp_path: Path, change) -> Path:
    """A copy of ``bundle`` whose bundle.json went through ``change(dict)``."""
    root = tmp_path / "changed"
    shutil.copytree(bundle, root)
    manifest = json.loads((root / "bundle.json").read_text())
    change(manifest)
    atomic_write_json(root / "bundle.json", manifest)
    return root


EPYC_VNNI = parse_cpuinfo("model name\t: AMD EPYC\nflags\t\t: avx2 fma avx512f avx512bw avx512_vnni\n")


@pytest.fixture
def no_cached_choices(tmp_path, monkeypatch):
    """An empty per-host choice cache, so only what a test records can inform ``auto``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("cpu", [XEON, EPYC, EPYC_VNNI, GRAVITON, CORTEX])
def test_auto_without_a_measurement_assumes_fp32_whatever_the_isa(int8_bundle, cpu, no_cached_choices):
    # VNNI/AMX/asimddp once made auto claim "INT8 pays here"; on a 2-core EPYC with VNNI INT8 measured 1.07x
    # slower. Unmeasured, auto runs FP32 and says so.
    choice = select_artifact(load_manifest(int8_bundle, verify_hashes=False), cpu=cpu, threads=2)
    assert choice.artifact == "onnx_fp32"
    assert choice.reason == (
        f"no FP32/INT8 timing for this CPU ({cpu.model}): FP32 assumed, INT8 unmeasured here "
        "(precision='fastest' measures both once; auto then follows it)"
    )
    assert "pays" not in choice.reason


def test_auto_follows_a_fastest_measurement_cached_on_this_host(int8_bundle, tmp_path):
    from fashion.runtime.selection import choice_cache_key

    bundle = load_manifest(int8_bundle, verify_hashes=False)
    key = choice_cache_key(bundle, ["onnx_fp32", "onnx_int8"], EPYC_VNNI, 2)
    measured = {"p50_ms": {"onnx_fp32": 3.0, "onnx_int8": 2.0}, "measured_at": "2026-11-28T09:00:00+00:00"}
    choice = select_artifact(bundle, cpu=EPYC_VNNI, threads=2, choices={key: {"artifact": "onnx_int8", **measured}})
    assert choice.artifact == "onnx_int8"
    assert choice.reason == (
        "timings measured on this host by precision='fastest' (2026-11-28T09:00:00+00:00): "
        "int8 2.00 ms, fp32 3.00 ms at batch 1 (INT8 pays)"
    )
    tie = {key: {"artifact": "onnx_int8", "p50_ms": {"onnx_fp32": 2.0, "onnx_int8": 1.97}}}  # fastest: min wins
    assert select_artifact(bundle, cpu=EPYC_VNNI, threads=2, choices=tie).artifact == "onnx_fp32"  # auto: 5% rule
    # a measurement at other threads is another key: unmeasured at 1 thread
    assert "FP32 assumed" in select_artifact(bundle, cpu=EPYC_VNNI, threads=1, choices=tie).reason


def test_classifier_load_reports_the_assumed_choice(int8_bundle, no_cached_choices):
    with Classifier.load(int8_bundle, threads=1) as clf:
        choice = clf.info["artifact_choice"]
    assert choice["artifact"] in ("onnx_fp32", "onnx_int8")
    if choice["artifact"] == "onnx_int8":  # only with a recorded timing of this very host
        assert "INT8 pays" in choice["reason"] and "recorded" in choice["reason"]
    else:
        assert "FP32" in choice["reason"] and "INT8 pays" not in choice["reason"]


def test_exporters_default_is_not_a_choice_but_recorded_timings_for_this_cpu_are(int8_bundle, tmp_path):
    def change(manifest):
        manifest.pop("facts", None)
        manifest["schema_version"] = 1
        manifest["default_artifact"] = "onnx_int8"  # chosen on the exporting (VNNI) machine
        manifest["artifacts"]["onnx_int8"]["timings"] = [
            {"cpu": EPYC.model, "flags": EPYC.reported_flags, "threads": 2, "batch": 1, "p50_ms": 6.45},
            {"cpu": XEON.model, "flags": XEON.reported_flags, "threads": 2, "batch": 1, "p50_ms": 9.0},
        ]
        manifest["artifacts"]["onnx_fp32"]["timings"] = [
            {"cpu": EPYC.model, "flags": EPYC.reported_flags, "threads": 2, "batch": 1, "p50_ms": 5.04},
            {"cpu": XEON.model, "flags": XEON.reported_flags, "threads": 2, "batch": 1, "p50_ms": 7.5},
        ]

    bundle = load_manifest(with_manifest(int8_bundle, tmp_path, change), verify_hashes=False)
    epyc = select_artifact(bundle, cpu=EPYC)
    assert epyc.artifact == "onnx_fp32" and "timings recorded on this CPU (AMD EPYC 7B12)" in epyc.reason
    # a measurement on this exact CPU outranks the ISA rule: the Xeon has VNNI but its record says FP32 wins
    assert select_artifact(bundle, cpu=XEON).artifact == "onnx_fp32"
    # another CPU's timings say nothing about this one, nor does its ISA: unmeasured, FP32 is assumed
    assert select_artifact(bundle, cpu=CORTEX).artifact == "onnx_fp32"
    assert "FP32 assumed" in select_artifact(bundle, cpu=GRAVITON).reason
    assert select_artifact(bundle, cpu=EPYC, precision="int8").reason == "precision int8 requested"


SAPPHIRE = parse_cpuinfo(
    "model name\t: Intel(R) Xeon(R) Gold 6448Y\nflags\t\t: avx2 fma avx512f avx512_vnni amx_int8\n"
)
ICE_LAKE = parse_cpuinfo("model name\t: Intel(R) Xeon(R) Gold 6338\nflags\t\t: avx2 fma avx512f avx512_vnni\n")


def _timed(int8_bundle, tmp_path, fp32_ms, int8_ms, cpu=XEON, when="2026-11-27T10:00:00Z"):
    def change(manifest):
        for key, ms in (("onnx_fp32", fp32_ms), ("onnx_int8", int8_ms)):
            manifest["artifacts"][key]["timings"] = [
                {
                    "cpu": cpu.model,
                    "flags": cpu.reported_flags,
                    "threads": 2,
                    "batch": 1,
                    "p50_ms": ms,
                    "measured_at": when,
                }
            ]

    return load_manifest(with_manifest(int8_bundle, tmp_path, change), verify_hashes=False)


def test_int8_must_be_clearly_faster_on_recorded_timings(int8_bundle, tmp_path):
    tie = select_artifact(_timed(int8_bundle, tmp_path / "tie", 3.317, 3.296), cpu=XEON)  # within noise
    assert tie.artifact == "onnx_fp32" and "FP32 kept" in tie.reason
    clear = select_artifact(_timed(int8_bundle, tmp_path / "clear", 3.3, 2.0), cpu=XEON)
    assert clear.artifact == "onnx_int8" and "INT8 pays" in clear.reason
    # a timing at other threads on this very CPU still outranks the ISA rule (every instance chooses alike)
    one_thread = select_artifact(_timed(int8_bundle, tmp_path / "threads", 2.6, 2.8), cpu=XEON, threads=1)
    assert one_thread.artifact == "onnx_fp32" and "this CPU (Intel(R) Xeon(R) Platinum 8480+) with 2 threads" in (
        one_thread.reason
    )


def test_timings_of_a_cpu_with_the_same_int8_instructions_outrank_the_isa_rule(int8_bundle, tmp_path):
    bundle = _timed(int8_bundle, tmp_path, 2.65, 3.09, cpu=SAPPHIRE)  # measured: INT8 slower despite VNNI/AMX
    other = select_artifact(bundle, cpu=XEON)  # another model with the same avx512_vnni + amx_int8
    assert other.artifact == "onnx_fp32" and "another CPU with avx512_vnni, amx_int8 (Intel(R) Xeon(R) Gold" in (
        other.reason
    )
    # a CPU with a different set (VNNI, no AMX) is not described by those timings: FP32 assumed, not claimed
    assert select_artifact(bundle, cpu=ICE_LAKE).artifact == "onnx_fp32"
    assert "FP32 assumed" in select_artifact(bundle, cpu=ICE_LAKE).reason
    # and one without the instructions never borrows them
    assert select_artifact(bundle, cpu=EPYC).artifact == "onnx_fp32"


def test_pinned_artifact_wins(int8_bundle, tmp_path):
    pinned = with_manifest(int8_bundle, tmp_path, lambda m: m.update(pinned_artifact="onnx_int8"))
    choice = select_artifact(load_manifest(pinned, verify_hashes=False), cpu=EPYC)
    assert choice == ArtifactChoice("onnx_int8", "pinned_artifact in bundle.json")


def test_fastest_times_the_candidates_once_and_caches_the_winner(int8_bundle, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with Classifier.load(int8_bundle, precision="fastest", timing_image=photos[0], threads=1) as first:
        choice = first.info["artifact_choice"]
        assert choice["artifact"] in ("onnx_fp32", "onnx_int8") and "measured now" in choice["reason"]
        assert first.artifact == choice["artifact"] and first.predict(photos[1]).heads
    cache = json.loads((tmp_path / "cache" / "fashion-edge" / "choices.json").read_text())
    [(key, record)] = cache["choices"].items()
    assert record["artifact"] == choice["artifact"] and set(record["p50_ms"]) == {"onnx_fp32", "onnx_int8"}
    assert record["cpu"] in key and key.endswith("threads=1") and record["threads"] == 1
    with Classifier.load(int8_bundle, precision="fastest", threads=1) as again:  # no timing: read from the cache
        assert again.artifact == choice["artifact"]
        assert again.info["artifact_choice"]["reason"].startswith("fastest on this host, measured 20")
    with Classifier.load(int8_bundle, precision="fastest", threads=2, timing_image=photos[0]):
        pass  # another thread count is another key
    assert len(json.loads((tmp_path / "cache" / "fashion-edge" / "choices.json").read_text())["choices"]) == 2


def test_threaded_batches_equal_serial_ones(clf, photos, tmp_path):
    big = tmp_path / "big.jpg"
    Image.open(photos[3]).convert("RGB").resize((1200, 1600), Image.Resampling.BICUBIC).save(big, quality=90)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    sources = [*photos[:5], big, tmp_path / "broken.jpg", *photos[5:9], str(big)]

    def summary(items):
        return [(item.source, item.error, item.prediction and item.prediction.to_dict()["heads"]) for item in items]

    serial = summary(clf.predict_batch(sources, batch_size=3, decode_threads=1))
    assert serial[6][1] and "broken.jpg" in serial[6][0] and all(row[2] for i, row in enumerate(serial) if i != 6)
    for threads in (None, 2, 4):
        assert summary(clf.predict_batch(sources, batch_size=3, decode_threads=threads)) == serial
    assert summary(clf.predict_batch(sources, batch_size=64, decode_threads=3)) == serial
    assert clf.predict_batch([], decode_threads=2) == []
    with pytest.raises(ValueError, match="decode_threads"):
        clf.predict_batch(sources, decode_threads=0)


def test_decode_plan_never_oversubscribes(tiny_bundle):
    cores = usable_cores()
    with Classifier.load(tiny_bundle) as default:
        assert default.threads == cores  # the model gets the usable cores, cgroup quota included
        threads, overlap = default.decode_plan()
        assert threads + (default.threads if overlap else 0) <= cores
    with Classifier.load(tiny_bundle, threads=1) as single:
        threads, overlap = single.decode_plan()
        assert threads + (1 if overlap else 0) <= max(cores, 2) and (overlap or cores == 1)


def test_spinning_and_session_options_are_reported(tiny_bundle, photos, clf):
    with Classifier.load(tiny_bundle, threads=2, spinning=True) as spinning:
        options = spinning.info["session_options"]
        assert options["allow_spinning"] is True and options["intra_op_num_threads"] == 2
        assert spinning.predict(photos[0]).to_dict()["heads"] == clf.predict(photos[0]).to_dict()["heads"]
        assert options["spin_between_calls"] is True
    # default: the model has every usable core, so decoding shares them: threads spin inside a call (fast
    # batch-1 calls) and stop when it returns
    default = clf.info["session_options"]
    assert clf.threads == usable_cores() and default["allow_spinning"] is True
    assert default["spin_between_calls"] is False
    with Classifier.load(tiny_bundle, spinning=False) as never:
        assert never.info["session_options"]["allow_spinning"] is False
        assert never.info["session_options"]["spin_between_calls"] is False
        assert never.predict(photos[0]).to_dict()["heads"] == clf.predict(photos[0]).to_dict()["heads"]
    if usable_cores() > 1:
        with Classifier.load(tiny_bundle, threads=usable_cores() - 1) as spare:  # a core left for decoding
            assert spare.info["session_options"]["spin_between_calls"] is True


def test_fast_decode_can_be_switched_off(tiny_bundle, photos, tmp_path):
    big = tmp_path / "big.jpg"
    Image.open(photos[0]).convert("RGB").resize((960, 1280), Image.Resampling.BICUBIC).save(big, quality=90)
    with Classifier.load(tiny_bundle, fast_decode=False) as exact, Classifier.load(tiny_bundle) as fast:
        assert exact.info["decode"]["fast_path"] is False and fast.info["decode"]["fast_path"] is True
        assert fast.preprocess(big).shape == exact.preprocess(big).shape == (32, 24, 3)
        assert np.abs(fast.preprocess(big).astype(int) - exact.preprocess(big).astype(int)).mean() < 0.5


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
