"""Native TensorRT backend. The engine tests need TensorRT 10, cuda-python and an NVIDIA GPU and skip elsewhere;
the compatibility check and the missing-package message are tested everywhere."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from fashion.runtime import BackendUnavailableError, BundleError, Classifier
from fashion.runtime.backends.tensorrt_backend import check_engine_compatibility
from fashion.runtime.bundle import record_artifact
from fashion.runtime.manifest import ArtifactEntry

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_for_another_gpu_or_tensorrt_is_refused(tmp_path):
    engine = tmp_path / "model_fp16_sm90_trt10.3.0.plan"
    facts = {"file": engine.name, "sha256": "0" * 64, "format": "tensorrt"}
    entry = ArtifactEntry.from_dict({**facts, "compute_capability": "9.0", "tensorrt_version": "10.3.0"})
    check_engine_compatibility(engine, entry, "9.0", "10.3.0")  # same GPU and TensorRT: accepted
    with pytest.raises(
        BundleError, match=r"sm90_trt10\.3\.0\.plan: engine was built for GPU compute capability 9\.0, this GPU is 8\.6"
    ):
        check_engine_compatibility(engine, entry, "8.6", "10.3.0")
    with pytest.raises(BundleError, match=r"built with TensorRT 10\.3\.0, this machine has 10\.8\.0.*rebuild"):
        check_engine_compatibility(engine, entry, "9.0", "10.8.0")
    # the version may also be recorded among the tool versions
    with pytest.raises(BundleError, match="TensorRT 10.1.0"):
        older = ArtifactEntry.from_dict({**facts, "tool_versions": {"tensorrt": "10.1.0"}})
        check_engine_compatibility(engine, older, "9.0", "10.3.0")


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here; this checks the message when it is not")
def test_missing_tensorrt_names_the_gpu_extra(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    (bundle / "model_fp16.plan").write_bytes(b"an engine would be here")
    record_artifact(
        bundle,
        "tensorrt_fp16",
        "model_fp16.plan",
        format="tensorrt",
        precision="fp16",
        outputs={h: h for h in ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season")},
    )
    with pytest.raises(BackendUnavailableError, match=r"needs the 'tensorrt' package.*fashion-edge\[gpu\]"):
        Classifier.load(bundle, backend="tensorrt")


# -- on a machine with TensorRT 10 and a GPU -----------------------------------------------------------


def _gpu_ready() -> str | None:
    if not HAVE_TENSORRT:
        return "TensorRT is not installed (pip install 'fashion-edge[gpu]' on a machine with an NVIDIA GPU)"
    try:
        from fashion.runtime.backends import tensorrt_backend as backend

        backend._require_gpu_packages()
        backend.current_compute_capability()
    except Exception as exc:  # no cuda-python, no driver, no GPU
        return f"TensorRT is installed but no usable CUDA GPU/cuda-python: {exc}"
    return None


gpu = pytest.mark.skipif(_gpu_ready() is not None, reason=str(_gpu_ready()))


@pytest.fixture(scope="module")
def trt_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle plus an FP16 engine built here (profile: batch 1..4, so batch 7 must be split)."""
    import tensorrt as trt

    from fashion.runtime.backends.tensorrt_backend import current_compute_capability

    bundle = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("trt") / "bundle")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse((bundle / "model_fp32.onnx").read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 32, 24, 3), (4, 32, 24, 3), (4, 32, 24, 3))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    (bundle / "model_fp16.plan").write_bytes(bytes(plan))
    heads = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season")
    record_artifact(
        bundle,
        "tensorrt_fp16",
        "model_fp16.plan",
        format="tensorrt",
        precision="fp16",
        outputs={h: h for h in heads},
        feature_map="feature_map",
        compute_capability=current_compute_capability(),
        tensorrt_version=trt.__version__,
    )
    return bundle


@gpu
def test_tensorrt_predictions_match_onnxruntime(trt_bundle, sample_dir):
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:7]
    with Classifier.load(trt_bundle) as reference, Classifier.load(trt_bundle, backend="tensorrt") as engine:
        assert engine.info["backend"] == "tensorrt" and engine.info["providers"][0].startswith("TensorRT 10")
        batch = engine.predict_batch(photos, batch_size=7)  # larger than the profile's max of 4
        for item, photo in zip(batch, photos):
            expected = reference.predict(photo, top_k=3)
            single = engine.predict(photo, top_k=3)
            for head in expected.heads:
                assert abs(single.heads[head].confidence - expected.heads[head].confidence) < 2e-2
                assert abs(item.prediction.heads[head].confidence - single.heads[head].confidence) < 1e-3
        heat = engine.cam(photos[0])
        np.testing.assert_allclose(heat, reference.cam(photos[0]), atol=0.05)


@gpu
def test_tensorrt_engine_recorded_for_another_gpu_is_refused(trt_bundle, tmp_path):
    import json

    from fashion.runtime.bundle import atomic_write_json

    bundle = shutil.copytree(trt_bundle, tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["artifacts"]["tensorrt_fp16"]["compute_capability"] = "5.0"
    atomic_write_json(bundle / "bundle.json", manifest)
    with pytest.raises(BundleError, match="compute capability 5.0"):
        Classifier.load(bundle, backend="tensorrt")
