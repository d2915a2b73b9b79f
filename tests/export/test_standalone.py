"""The standalone model (uint8 pixels of any size in, six heads out) against the Python runtime, on real photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from fashion import HEADS
from fashion.export import standalone
from fashion.export.errors import ExportError
from fashion.export.pipeline import ExportOptions, run_export
from fashion.runtime import Classifier
from fashion.runtime.bundle import load_manifest
from fashion.runtime.manifest import edit_manifest
from fashion.runtime.preprocess import fit_to_input, load_image

HEIGHT, WIDTH = 32, 24  # the tiny bundle's input size


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def pre_session() -> ort.InferenceSession:
    """The preprocessing graph alone: pixels -> the float image the network sees."""
    graph = standalone.preprocessing_graph(HEIGHT, WIDTH, output="image")
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", standalone.OPSET)], ir_version=8))


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Image.Image]:
    return [load_image(path) for path in sorted((sample_dir / "images").glob("*.jpg"))[:6]]


@pytest.fixture(scope="module")
def model_path(tiny_bundle, tmp_path_factory) -> Path:
    bundle = load_manifest(tiny_bundle)
    path = tmp_path_factory.mktemp("standalone") / standalone.FILE
    standalone.build_file(bundle, bundle.artifacts["onnx_fp32"], path)
    return path


def _graph_pixels(session: ort.InferenceSession, image: Image.Image) -> np.ndarray:
    return session.run(None, {"pixels": np.asarray(image, dtype=np.uint8)[None]})[0][0]


@pytest.mark.parametrize("size", [(20, 32), (21, 32), (23, 32), (24, 29), (24, 30), (24, 27)])
def test_padding_is_placed_exactly_as_the_runtime_places_it(pre_session, photos, size):
    # Photos whose padded canvas is exactly the model size: no resize, so every pixel must match.
    image = photos[0].resize(size, Image.Resampling.BILINEAR)
    expected = fit_to_input(image, HEIGHT, WIDTH).astype(np.float32)
    np.testing.assert_array_equal(_graph_pixels(pre_session, image), expected)


@pytest.mark.parametrize("size", [None, (1080, 1440), (400, 300), (301, 401), (97, 61), (1, 6), (6, 1), (2, 2)])
@pytest.mark.parametrize("model_size", [(HEIGHT, WIDTH), (128, 96)])
def test_pad_and_resize_reproduce_pillow(photos, size, model_size):
    # Pillow's bilinear filter (antialiased when shrinking) is reproduced up to a rare off-by-one from float
    # weights. (1, 6): the canvas width is round(4.5) = 4 with Python's half-to-even rounding; 5 would shift
    # every column of the photo.
    height, width = model_size
    graph = standalone.preprocessing_graph(height, width, output="image")
    session = _session(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", standalone.OPSET)], ir_version=8)
    )
    for photo in photos:
        image = photo if size is None else photo.resize(size, Image.Resampling.BICUBIC)
        diff = np.abs(_graph_pixels(session, image) - fit_to_input(image, height, width).astype(np.float32))
        assert diff.max() <= 2, f"{image.size}: max pixel difference {diff.max()}"
        assert (diff > 0).mean() < 0.01, f"{image.size}: {(diff > 0).mean():.2%} of the values differ"


def test_model_contract_and_metadata(model_path, tiny_bundle):
    model = onnx.load(str(model_path))
    bundle = load_manifest(tiny_bundle)
    (pixels,) = model.graph.input
    assert pixels.name == "pixels" and pixels.type.tensor_type.elem_type == TensorProto.UINT8
    dims = pixels.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]
    assert [o.name for o in model.graph.output] == [*HEADS, "feature_map"]
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 18
    resize = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resize) == 1 and helper.get_attribute_value(resize[0].attribute[0]) is not None
    assert {a.name: helper.get_attribute_value(a) for a in resize[0].attribute}["antialias"] == 1

    meta = standalone.read_metadata(model_path)
    assert meta["heads"] == list(HEADS)
    assert meta["labels"] == {head: bundle.labels[head] for head in HEADS}
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["inside"]["pad_value"] == 255
    assert meta["source"]["sha256"] == bundle.artifacts["onnx_fp32"].sha256


def test_outputs_agree_with_the_runtime_at_any_photo_size(model_path, tiny_bundle, photos):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with Classifier.load(tiny_bundle, precision="fp32") as classifier:
        for size in (None, (1080, 1440), (333, 200)):
            for photo in photos:
                image = photo if size is None else photo.resize(size, Image.Resampling.BICUBIC)
                got = dict(zip(HEADS, session.run(list(HEADS), {"pixels": np.asarray(image)[None]})))
                expected = classifier.infer(fit_to_input(image, HEIGHT, WIDTH)[None].astype(np.float32))
                for head in HEADS:
                    assert got[head].argmax() == expected[head].argmax(), f"{head} at {image.size}"
                    assert np.abs(got[head] - expected[head]).max() < 0.02


def test_a_batch_of_same_size_photos_runs_at_once(model_path, photos):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    batch = np.stack([np.asarray(p.resize((60, 80))) for p in photos[:3]])
    outputs = session.run(None, {"pixels": batch})
    assert [o.shape[0] for o in outputs] == [3] * len(outputs)
    np.testing.assert_allclose(outputs[0].sum(axis=1), 1.0, atol=1e-5)


def test_network_without_the_heads_is_refused(tiny_bundle):
    bundle = load_manifest(tiny_bundle)
    network = onnx.load(str(tiny_bundle / bundle.artifacts["onnx_fp32"].file))
    del network.graph.output[0]
    with pytest.raises(ExportError, match="lacks the outputs"):
        standalone.build_standalone(network, bundle, "0" * 64)


def _split_file(sample_dir: Path, path: Path) -> Path:
    with open(sample_dir / "styles.csv", newline="", encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    path.write_text("id,split\n" + "".join(f"{i},test\n" for i in ids), encoding="utf-8")
    return path


def test_export_gates_records_and_writes_ort(tiny_bundle, sample_dir, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    options = ExportOptions(
        standalone_only=True,
        data_dir=sample_dir,
        split_file=_split_file(sample_dir, tmp_path / "s.csv"),
        standalone_images=24,
        standalone_upscaled_images=6,
        progress=False,
    )
    logs: list[str] = []
    result = run_export(root, options, log=logs.append)
    entry = result.written["onnx_standalone"]

    bundle = load_manifest(root)  # verifies every recorded sha256, the new files included
    assert entry.format == "onnx_standalone" and entry.input == "pixels"
    gate = bundle.artifacts["onnx_standalone"].extra["gate"]
    assert set(gate["sets"]) == {"test", "test_1080x1440"}
    assert gate["sets"]["test"]["images"] == 24 and gate["sets"]["test_1080x1440"]["images"] == 6
    assert all(row["top1_agreement"] >= 0.995 for s in gate["sets"].values() for row in s["heads"].values())
    assert any("Standalone ONNX (pixels in): top-1 agreement with the runtime" in line for line in logs)

    ort_entry = bundle.artifacts["ort_standalone"]
    assert ort_entry.extra["source"]["converted_from"]["sha256"] == entry.sha256
    config = (root / standalone.OPS_FILE).read_text(encoding="utf-8")
    assert "Resize" in config and "Pad" in config and str(tmp_path) not in config
    pixels = np.asarray(load_image(sorted((sample_dir / "images").glob("*.jpg"))[0]))[None]
    from_onnx = ort.InferenceSession(str(root / standalone.FILE), providers=["CPUExecutionProvider"])
    from_ort = ort.InferenceSession(str(root / standalone.ORT_FILE), providers=["CPUExecutionProvider"])
    for a, b in zip(from_onnx.run(list(HEADS), {"pixels": pixels}), from_ort.run(list(HEADS), {"pixels": pixels})):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_gate_refuses_a_model_that_disagrees_with_the_runtime(tiny_bundle, sample_dir, tmp_path):
    from tests.fixtures.tiny_bundle import build_model

    bundle = load_manifest(tiny_bundle)
    other, _ = build_model({head: len(bundle.labels[head]) for head in HEADS}, seed=99)  # other weights
    path = tmp_path / "other.onnx"
    onnx.save(standalone.build_standalone(other, bundle, "0" * 64), str(path))
    sets = standalone.gate_sets(
        bundle, sample_dir, _split_file(sample_dir, tmp_path / "s.csv"), limit=40, upscaled_limit=4
    )
    verdict = standalone.run_gate(tiny_bundle, path, sets, log=lambda _: None)
    assert not verdict.passed
    assert "top-1 agreement" in verdict.summary
    json.dumps(verdict.record)  # recordable as is


def test_judge_applies_both_thresholds():
    row = {"top1_agreement": 0.996, "accuracy_delta_pp": -0.2, "max_abs_diff": 0.01}
    verdict = standalone.judge({"test": {"images": 1000, "heads": {"gender": row}}})
    assert not verdict.passed and "accuracy differs by -0.20 pp" in verdict.summary
    verdict = standalone.judge({"test": {"images": 1000, "heads": {"gender": {**row, "accuracy_delta_pp": 0.05}}}})
    assert verdict.passed


def _export(*args: str):
    from unittest import mock

    from click.testing import CliRunner

    from fashion.export.cli import main

    with mock.patch("sys.argv", ["fashion-export", *args]):  # the command line the report quotes
        return CliRunner().invoke(main, list(args))


def test_command_line_builds_records_and_writes_the_report(tiny_bundle, sample_dir, tmp_path):
    # fashion-export --standalone-only: the standalone model alone, from the recorded FP32 ONNX (no Keras model)
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    split = _split_file(sample_dir, tmp_path / "s.csv")
    done = _export(
        str(root),
        "--standalone-only",
        "--data",
        str(sample_dir),
        "--split-file",
        str(split),
        "--standalone-images",
        "10",
        "--standalone-upscaled-images",
        "3",
        "--no-standalone-ort",
        "--standalone-report",
        str(tmp_path / "eval"),
        "--standalone-latency-images",
        "2",
        "--quiet",
    )
    assert done.exit_code == 0, done.output
    assert "onnx_standalone" in load_manifest(root).artifacts and not (root / standalone.ORT_FILE).exists()
    report = json.loads((tmp_path / "eval" / "standalone.json").read_text(encoding="utf-8"))
    assert report["gate"]["sets"]["test"]["images"] == 10 and report["gate"]["sets"]["test_1080x1440"]["images"] == 3
    table = (tmp_path / "eval" / "standalone.md").read_text(encoding="utf-8")
    assert "| articleType | 100.00% |" in table and "--standalone-upscaled-images 3" in table
    assert "Command: `fashion-export " in table
    assert set(report["latency_ms_batch1"]["sizes"]) == {"as is", "1080x1440"} and "| 1080x1440 |" in table


def test_command_line_refuses_a_bundle_without_fp32(tiny_bundle, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    with edit_manifest(root) as draft:
        draft.drop_artifact("onnx_fp32")
    done = _export(str(root), "--standalone-only", "--quiet")
    assert done.exit_code == 2
    assert done.output.strip().splitlines()[-1].startswith("Error: ") and "no onnx_fp32 artifact" in done.output


def test_stage_runs_under_the_export_driver(tiny_bundle, sample_dir, tmp_path):
    from fashion.export import pipeline

    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    (root / "model.keras").write_bytes(b"")  # the driver's context insists on one; this stage never reads it
    options = pipeline.ExportOptions(
        standalone=True,
        data_dir=sample_dir,
        split_file=_split_file(sample_dir, tmp_path / "s.csv"),
        progress=False,
        standalone_images=12,
        standalone_upscaled_images=2,
    )
    ctx = pipeline.ExportContext(root, options, log=lambda _: None)
    ctx.fp32_entry = load_manifest(root).artifacts["onnx_fp32"]
    assert pipeline.run_stage(ctx, standalone.StandaloneStage())
    artifacts = load_manifest(root).artifacts
    assert artifacts["onnx_standalone"].extra["gate"]["sets"]["test"]["images"] == 12
    assert artifacts["ort_standalone"].derived_from("onnx_fp32") == ctx.fp32_entry.sha256


def test_the_gate_shows_progress(tiny_bundle, model_path, sample_dir, tmp_path, capsys):
    sets = standalone.gate_sets(
        load_manifest(tiny_bundle), sample_dir, _split_file(sample_dir, tmp_path / "s.csv"), limit=8, upscaled_limit=2
    )
    standalone.run_gate(tiny_bundle, model_path, sets, log=print, progress=True)
    captured = capsys.readouterr()
    assert "standalone gate: test: 8 photos" in captured.out
    assert "standalone gate test: " in captured.err and "/8 [" in captured.err  # a bar per set, photos of 8


# -- issue 21 item 16: edge sizes and the exact agreement limits -----------------------------------------------


@pytest.mark.parametrize("shape", [(1, 0, 96, 3), (1, 128, 0, 3), (1, 0, 0, 3), (2, 0, 5, 3)])
def test_a_photo_without_pixels_is_refused(model_path, shape):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="refuse_empty_photo"):
        session.run(None, {"pixels": np.zeros(shape, dtype=np.uint8)})
    session.run(None, {"pixels": np.zeros((1, 1, 1, 3), dtype=np.uint8)})  # one pixel is a photo


THIN_AND_LARGE = [(600, 1), (1, 600), (10000, 3), (10000, 1), (1, 10000), (4000, 3000), (3000, 4000)]


@pytest.mark.parametrize("model_size", [(HEIGHT, WIDTH), (128, 96)])
def test_pixel_for_pixel_with_the_exact_path_at_edge_sizes(photos, model_size):
    # The contract: the graph equals fit_to_input (Classifier.load(..., fast_decode=False)) at any size.
    height, width = model_size
    graph = standalone.preprocessing_graph(height, width, output="image")
    session = _session(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", standalone.OPSET)], ir_version=8)
    )
    for size in THIN_AND_LARGE:
        image = photos[0].resize(size, Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(
            _graph_pixels(session, image), fit_to_input(image, height, width).astype(np.float32), err_msg=str(size)
        )


def test_the_default_fast_path_agrees_exactly_below_its_reduction_limit_only(tiny_bundle, pre_session, photos):
    # The runtime's default decode reduces a photo whose padded canvas is >= 2 * FAST_DECODE_GAP times the model
    # input first; below that it is the exact path, so the standalone model agrees pixel for pixel.
    from fashion.runtime.preprocess import FAST_DECODE_GAP

    limit = 2 * FAST_DECODE_GAP
    with Classifier.load(tiny_bundle, precision="fp32") as fast:
        assert fast.preprocessor.fast
        below = (int(WIDTH * limit) - 2, int(HEIGHT * limit) - 2)  # canvas just under 6x the 32x24 input
        for size in [below, (100, 1), (1, 100)]:
            image = photos[1].resize(size, Image.Resampling.BICUBIC)
            np.testing.assert_array_equal(_graph_pixels(pre_session, image), fast.preprocess(image), err_msg=str(size))
        differs = [
            size
            for size in [(int(WIDTH * limit) * 2, int(HEIGHT * limit) * 2), *THIN_AND_LARGE]
            if not np.array_equal(
                _graph_pixels(pre_session, photos[1].resize(size, Image.Resampling.BICUBIC)),
                fast.preprocess(photos[1].resize(size, Image.Resampling.BICUBIC)),
            )
        ]
    assert differs, "above the limit the fast path reduces first; the documented contract names the exact path"
