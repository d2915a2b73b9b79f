"""fashion-export on tiny real Keras models and real photos: gates pass, gates refuse, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from click.testing import CliRunner  # noqa: E402

from fashion import HEADS  # noqa: E402
from fashion.runtime.bundle import MANIFEST, load_manifest, record_artifact  # noqa: E402
from fashion.runtime.preprocess import PREPROCESSING_SPEC  # noqa: E402

HEIGHT, WIDTH = 32, 24
SPLIT_FILE = Path(__file__).resolve().parents[2] / "data" / "splits" / "fashion-product-images.csv"
FAST = ["--parity-images", "256", "--calib-images", "48", "--eval-images", "64", "--quiet"]
NO_TIMINGS = ["--no-timings"]


def make_keras_bundle(
    root: Path,
    data_dir: Path,
    height: int = HEIGHT,
    width: int = WIDTH,
    backbone: str = "tiny",
    weights: str | None = None,
    seed: int = 7,
) -> Path:
    """A training-style bundle written by the training code's bundle writer, with an untrained model."""
    import keras

    from fashion.data.dataset import load_dataset
    from fashion.data.labels import build_vocabularies, hierarchy
    from fashion.train.bundle_io import write_bundle
    from fashion.train.model import build_model

    frame, _ = load_dataset(data_dir)
    labels = build_vocabularies(frame)
    keras.utils.set_random_seed(seed)
    model = build_model({h: len(labels[h]) for h in HEADS}, height, width, weights=weights, backbone=backbone)
    return write_bundle(
        root,
        model,
        labels,
        hierarchy(frame),
        training={"backbone": backbone},
        metrics={},
        split_file=SPLIT_FILE,
        name="export-test",
    )


@pytest.fixture(scope="module")
def export_data(shared_data) -> Path:
    """The shared data: the committed sample holds too few train/val images (77/37) for calibration and gates."""
    return shared_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory, export_data):
    """A tiny bundle exported once with FP32 + FP16 + INT8 + Triton (reused by read-only tests)."""
    from fashion.export.cli import main

    root = make_keras_bundle(tmp_path_factory.mktemp("exported") / "bundle", export_data)
    repo = root.parent / "triton"
    result = CliRunner().invoke(
        main,
        [
            str(root),
            "--fp16",
            "--int8",
            "--triton",
            "--out",
            str(repo),
            "--data",
            str(export_data),
            "--max-drop",
            "100",
            *FAST,
        ],
    )
    return root, repo, result


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_export_writes_gated_fp32_fp16_int8_and_records_them(exported):
    root, _, result = exported
    assert result.exit_code == 0, result.output
    assert "TensorRT FP16: skipped" in result.output and "TensorRT INT8: skipped" in result.output
    bundle = load_manifest(root)  # every recorded sha256 matches its file
    artifacts = bundle.artifacts
    assert {"onnx_fp32", "onnx_fp16", "onnx_int8"} <= set(artifacts)
    fp32 = artifacts["onnx_fp32"]
    assert fp32.precision == "fp32" and fp32.extra["opset"] == 17 and fp32.format == "onnx"
    assert fp32.outputs == {h: h for h in HEADS} and fp32.feature_map == "feature_map"
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"} <= set(fp32.extra["tool_versions"])
    assert fp32.extra["parity"]["images"] >= 256
    for report in fp32.extra["parity"]["heads"].values():
        assert report["max_abs_diff"] <= 1e-4 and report["argmax_agreement"] == 1.0
    for report in artifacts["onnx_fp16"].extra["parity"]["heads"].values():
        assert report["argmax_agreement"] >= 0.99 and report["max_abs_diff"] < 0.05
    assert artifacts["onnx_int8"].extra["quantization"]["format"] == "QDQ"
    assert fp32.extra["graph_rewrites"] == {"identity_reshape": 0, "squeeze_reshape_pair": 0}  # tiny model: no SE
    # facts, not a shared choice: one timing per CPU artifact, tagged with this host
    assert "default_artifact" not in bundle.manifest.to_dict()
    from fashion.export.timing import cpu_facts
    from fashion.runtime import host
    from fashion.runtime.selection import recorded_pair

    for key in ("onnx_fp32", "onnx_fp16", "onnx_int8"):
        (timing,) = artifacts[key].timings
        assert timing.cpu == cpu_facts()["cpu"] and list(timing.flags or ()) == cpu_facts()["flags"]
        assert timing.batch == 1 and (timing.threads or 0) >= 1 and timing.p50_ms > 0 and timing.measured_at
    # the runtime finds the FP32/INT8 pair as measured on this CPU
    fp32_ms, int8_ms, where = recorded_pair(bundle, host.cpu_facts(), artifacts["onnx_fp32"].timings[0].threads)
    assert (fp32_ms, int8_ms) == (artifacts["onnx_fp32"].timings[0].p50_ms, artifacts["onnx_int8"].timings[0].p50_ms)
    assert where.startswith("timings recorded on this CPU")
    assert not [name for name in _files(root) if name.endswith(".tmp")]


def test_onnx_graph_contract_and_metadata(exported):
    import onnx

    root, _, _ = exported
    model = onnx.load(str(root / "model_fp32.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert sorted(o.name for o in model.graph.output) == sorted(list(HEADS) + ["feature_map"])
    props = {p.key: p.value for p in model.metadata_props}
    labels = json.loads((root / "labels.json").read_text())
    assert json.loads(props["labels"]) == labels and json.loads(props["heads"]) == list(HEADS)
    assert json.loads(props["preprocessing"]) == PREPROCESSING_SPEC
    fmap = {o.name: o for o in model.graph.output}["feature_map"].type.tensor_type.shape.dim
    assert [d.dim_value for d in fmap[1:]] == [HEIGHT // 4, WIDTH // 4, 16]


def test_exported_bundle_runs_in_the_runtime_like_keras(exported, export_data):
    import keras

    from fashion.runtime import Classifier
    from fashion.runtime.preprocess import preprocess

    root, _, _ = exported
    photos = sorted((export_data / "images").glob("*.jpg"))[:8]
    model = keras.saving.load_model(root / "model.keras", compile=False)
    batch = np.stack([preprocess(p, HEIGHT, WIDTH) for p in photos]).astype(np.float32)
    expected = model(batch, training=False)
    with Classifier.load(root, precision="fp32") as clf:
        for i, photo in enumerate(photos):
            pred = clf.predict(photo, top_k=1)
            for head in HEADS:
                assert pred.heads[head].index == int(np.argmax(expected[head][i]))
                assert abs(pred.heads[head].confidence - float(np.max(expected[head][i]))) < 1e-4
    with Classifier.load(root) as clf:  # precision "auto": the runtime chooses on this host
        assert clf.info["artifact"] in load_manifest(root).artifacts
        assert set(clf.predict(photos[0]).heads) == set(HEADS)


def test_parity_gate_refuses_a_perturbed_onnx_model(exported, export_data):
    import onnx
    from onnx import numpy_helper

    from fashion.export.gates import parity_gate
    from fashion.export.runner import run_model
    from fashion.runtime.manifest import ArtifactEntry
    from fashion.runtime.preprocess import preprocess

    root, _, _ = exported
    model = onnx.load(str(root / "model_fp32.onnx"))
    conv = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    weights = numpy_helper.to_array(conv).copy()
    weights.flat[0] += 0.05  # one weight, slightly off
    conv.CopyFrom(numpy_helper.from_array(weights, conv.name))
    perturbed = root.parent / "perturbed.onnx"
    onnx.save(model, str(perturbed))

    photos = sorted((export_data / "images").glob("*.jpg"))[:64]
    batch = np.stack([preprocess(p, HEIGHT, WIDTH) for p in photos]).astype(np.float32)
    keras = ArtifactEntry.for_file(root / "model.keras", {"format": "keras"})
    reference = run_model(root / "model.keras", keras, batch)  # keras backend
    entry = load_manifest(root).artifacts["onnx_fp32"]
    assert parity_gate(reference, run_model(root / "model_fp32.onnx", entry, batch), list(HEADS)).passed
    verdict = parity_gate(reference, run_model(perturbed, entry, batch), list(HEADS))
    assert not verdict.passed and "max abs diff" in verdict.summary


def test_fp32_gate_failure_exits_nonzero_and_writes_nothing(tmp_path, export_data):
    from fashion.export.cli import main

    root = make_keras_bundle(tmp_path / "bundle", export_data)
    before = _files(root)
    manifest_before = (root / MANIFEST).read_text()
    result = CliRunner().invoke(
        main, [str(root), "--data", str(export_data), "--parity-atol", "-1", *FAST, *NO_TIMINGS]
    )
    assert result.exit_code == 3, result.output
    assert "Error: ONNX FP32 refused by its gate" in result.output and "max abs diff" in result.output
    assert "Traceback" not in result.output
    assert _files(root) == before  # no ONNX, no temporary file
    assert (root / MANIFEST).read_text() == manifest_before


def test_int8_gate_failure_is_refused_and_leaves_no_int8(tmp_path, export_data):
    from fashion.export.cli import main

    root = make_keras_bundle(tmp_path / "bundle", export_data)
    result = CliRunner().invoke(
        main, [str(root), "--int8", "--data", str(export_data), "--max-drop", "-1", *FAST, *NO_TIMINGS]
    )
    assert result.exit_code == 3, result.output
    assert "ONNX INT8: REFUSED" in result.output
    assert not (root / "model_int8.onnx").exists()
    assert not [name for name in _files(root) if name.endswith(".tmp")]
    bundle = load_manifest(root)
    assert "onnx_int8" not in bundle.artifacts and "onnx_fp32" in bundle.artifacts  # what passed is kept
    assert "Error: REFUSED onnx_int8" in result.output


def test_reexport_after_the_keras_model_changed_drops_artifacts_of_the_old_model(tmp_path, export_data):
    import keras

    from fashion.export.cli import main

    root = make_keras_bundle(tmp_path / "bundle", export_data)
    args = [str(root), "--data", str(export_data), *FAST, *NO_TIMINGS]
    assert CliRunner().invoke(main, args + ["--fp16"]).exit_code == 0
    old_fp32 = load_manifest(root).artifacts["onnx_fp32"].sha256

    model = keras.saving.load_model(root / "model.keras", compile=False)
    kernel, bias = model.get_layer("articleType").get_weights()
    model.get_layer("articleType").set_weights([kernel * 1.5, bias])  # a retrained head, say
    model.save(root / "model.keras")
    record_artifact(root, "keras", "model.keras", format="keras", precision="fp32")
    from fashion.runtime.manifest import edit_manifest

    with edit_manifest(root) as draft:  # a schema-1 bundle's old choice, migrated to a fact about that file
        draft.put("default_artifact", "onnx_fp32")

    result = CliRunner().invoke(main, args)  # FP32 only this time
    assert result.exit_code == 0, result.output
    artifacts = load_manifest(root).artifacts
    assert artifacts["onnx_fp32"].sha256 != old_fp32
    assert "onnx_fp16" not in artifacts and not (root / "model_fp16.onnx").exists()
    assert "onnx_fp16: removed" in result.output
    assert load_manifest(root).manifest.recorded_default is None  # the fact was about the replaced file


def test_tensorrt_requested_without_tensorrt_fails_with_the_reason(tmp_path, export_data):
    from fashion.export.cli import main
    from fashion.export.tensorrt import tensorrt_status

    available, _ = tensorrt_status()
    if available:
        pytest.skip("TensorRT and a GPU are present here: the refusal path cannot be exercised")
    root = make_keras_bundle(tmp_path / "bundle", export_data)
    result = CliRunner().invoke(main, [str(root), "--tensorrt", "--data", str(export_data), *FAST, *NO_TIMINGS])
    assert result.exit_code == 4, result.output
    assert "Error: --tensorrt was asked for but cannot run here" in result.output
    assert "TensorRT" in result.output and not (root / "model_fp32.onnx").exists()


def test_tensorrt_engine_build(exported):
    from fashion.export.tensorrt import tensorrt_status

    available, reason = tensorrt_status()
    if not available:
        pytest.skip(f"TensorRT engine build needs TensorRT and an NVIDIA GPU: {reason}")
    root, _, result = exported
    assert "tensorrt_fp16" in load_manifest(root).artifacts, result.output


def test_calibration_reader_feeds_every_image_once_in_strides():
    from fashion.export.int8 import ImageCalibrationReader

    images = np.arange(50 * 2 * 2 * 3, dtype=np.float32).reshape(50, 2, 2, 3)
    reader = ImageCalibrationReader(images, batch_size=16, progress=False)
    assert len(reader) == 4 and reader.stride() == 4 and ImageCalibrationReader(images[:48], 16, False).stride() == 3
    seen = []
    for start in range(0, len(reader), 2):  # how ORT walks it with CalibStridedMinMax=2
        reader.set_range(start, start + 2)
        while (feed := reader.get_next()) is not None:
            seen.append(feed["image"])
    np.testing.assert_array_equal(np.concatenate(seen), images)


def test_cli_help_lists_the_options():
    from fashion.export.cli import main

    result = CliRunner().invoke(main, ["-h"])
    assert result.exit_code == 0 and "Exit codes" in result.output
    for option in (
        "--out",
        "--fp16",
        "--int8",
        "--tensorrt",
        "--triton",
        "--opset",
        "--max-batch",
        "--calib-images",
        "--max-drop",
        "--data",
        "--split-file",
        "--standalone",
        "--no-timings",
    ):
        assert option in result.output


@pytest.mark.slow
def test_real_efficientnet_trunk_converts_with_parity(tmp_path, export_data):
    """tf2onnx on the real EfficientNetB0 trunk (ImageNet weights when shared/ has them) at 64x48."""
    from fashion.export.cli import main
    from fashion.train.model import NOTOP_FILE

    weights = export_data.parents[1] / "weights" / NOTOP_FILE
    root = make_keras_bundle(
        tmp_path / "bundle",
        export_data,
        64,
        48,
        backbone="efficientnetb0",
        weights=str(weights) if weights.is_file() else None,
    )
    result = CliRunner().invoke(main, [str(root), "--data", str(export_data), *FAST, *NO_TIMINGS])
    assert result.exit_code == 0, result.output
    parity = load_manifest(root).artifacts["onnx_fp32"].extra["parity"]["heads"]
    assert all(r["max_abs_diff"] <= 1e-4 and r["argmax_agreement"] == 1.0 for r in parity.values())


def test_shipped_bundle_onnx_matches_its_manifest(shipped_bundle):
    bundle = load_manifest(shipped_bundle)
    if "onnx_fp32" not in bundle.artifacts:
        pytest.skip("shipped bundle not exported yet")
    assert "default_artifact" not in bundle.manifest.to_dict()  # no shared choice in the shipped bundle
    assert all(
        r["max_abs_diff"] <= 1e-4 and r["argmax_agreement"] == 1.0
        for r in bundle.artifacts["onnx_fp32"].extra["parity"]["heads"].values()
    )
    if "onnx_int8" in bundle.artifacts:
        gate = bundle.artifacts["onnx_int8"].extra["accuracy_gate"]
        assert gate["images"] >= 1000 and all(d is None or d <= gate["max_drop_pp"] for d in gate["drop_pp"].values())


def test_failing_tf2onnx_conversion_is_an_export_error_with_exit_2(tmp_path, export_data):
    from fashion.export.cli import main

    root = make_keras_bundle(tmp_path / "bundle", export_data)
    before, manifest_before = _files(root), (root / MANIFEST).read_text()
    result = CliRunner().invoke(main, [str(root), "--data", str(export_data), "--opset", "99", *FAST, *NO_TIMINGS])
    assert result.exit_code == 2, result.output
    assert "Error: tf2onnx could not convert the model at opset 99" in result.output
    assert "Traceback" not in result.output
    assert _files(root) == before and (root / MANIFEST).read_text() == manifest_before


def test_reexport_keeps_the_records_of_other_artifacts(tmp_path, export_data):
    """Re-running with other options adds what was asked and touches nothing else (facts included)."""
    from fashion.export.cli import main
    from fashion.runtime.manifest import Timing, edit_manifest

    root = make_keras_bundle(tmp_path / "bundle", export_data)
    args = [str(root), "--data", str(export_data), *FAST]
    first = CliRunner().invoke(main, args + ["--fp16", "--report-accuracy"])
    assert first.exit_code == 0, first.output
    elsewhere = {
        "cpu": "Another CPU",
        "flags": ["avx2"],
        "threads": 4,
        "batch": 1,
        "p50_ms": 1.5,
        "measured_at": "2026-01-01T00:00:00Z",
    }
    with edit_manifest(root) as draft:
        draft.add_timing("onnx_fp16", Timing.from_dict(elsewhere))
        draft.put("default_artifact", "onnx_fp32")  # an old fact about this very FP32 file
    before = load_manifest(root).artifacts

    second = CliRunner().invoke(main, args + ["--int8", "--max-drop", "100"])
    assert second.exit_code == 0, second.output
    assert "re-checking it" in second.output  # same Keras file, opset and recipe: FP32 reused, not reconverted
    after = load_manifest(root)
    assert set(after.artifacts) == set(before) | {"onnx_int8"}
    for key in ("onnx_fp32", "onnx_fp16"):
        assert after.artifacts[key].sha256 == before[key].sha256
        assert after.artifacts[key].accuracy == before[key].accuracy  # earlier accuracy records kept
    fp16_timings = after.artifacts["onnx_fp16"].timings
    assert Timing.from_dict(elsewhere) in fp16_timings and len(fp16_timings) == 2  # this host's replaced, other kept
    assert after.artifacts["onnx_int8"].accuracy is None  # not measured in this run
    assert "default_artifact" not in after.manifest.to_dict()  # never a shared choice
    assert after.manifest.recorded_default == "onnx_fp32"  # the fact about the unchanged FP32 file is kept


def test_driver_refusal_and_build_failure_leave_nothing_half_written(exported, tmp_path):
    """The driver around any stage: a refused stage removes its stale artifact; a failing build is an ExportError."""
    import shutil

    import onnx

    from fashion.export.errors import ExportError
    from fashion.export.gates import Verdict
    from fashion.export.pipeline import ExportContext, ExportOptions, run_stage
    from fashion.export.stages import Stage

    root = shutil.copytree(exported[0], tmp_path / "bundle")
    assert "onnx_fp16" in load_manifest(root).artifacts and (root / "model_fp16.onnx").is_file()
    ctx = ExportContext(root, ExportOptions(progress=False), log=lambda message: None)

    class Refused(Stage):
        key, title = "onnx_fp16", "always refused"

        def attempts(self, ctx):
            return ["a", "b"]

        def build(self, ctx, attempt, staged):
            staged.write_bytes(b"candidate " + attempt.encode())
            return {}

        def gate(self, ctx, attempt, staged, built):
            assert staged.read_bytes().startswith(b"candidate")  # the gate sees the staged file
            return Verdict(False, {}, f"attempt {attempt} is not good enough")

    assert run_stage(ctx, Refused()) is False
    assert "attempt a is not good enough" in ctx.result.refused["onnx_fp16"]
    assert "attempt b is not good enough" in ctx.result.refused["onnx_fp16"]
    assert (
        "onnx_fp16" not in load_manifest(root).artifacts and not (root / "model_fp16.onnx").exists()
    )  # stale copy gone
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]

    class Broken(Refused):
        key, title = "onnx_int8", "broken converter"

        def build(self, ctx, attempt, staged):
            staged.write_bytes(b"not an onnx model")
            onnx.checker.check_model(str(staged))  # raises: a real converter failure
            return {}

    int8_before = load_manifest(root).artifacts["onnx_int8"].to_dict()
    with pytest.raises(ExportError, match=r"broken converter \(build\) failed: ValidationError"):
        run_stage(ctx, Broken())
    assert load_manifest(root).artifacts["onnx_int8"].to_dict() == int8_before  # a crash is not a refusal
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]
