"""KerasBackend behind the runtime's Backend interface: the same answers as the ONNX backend on the tiny bundle.

The tiny bundle is ONNX only; the test rebuilds the same network in Keras from the ONNX weights
(Conv 3x3 stride 2 with padding 1 -> ZeroPadding2D(1) + valid Conv2D), saves it as the bundle's
model.keras, and compares both backends on real sample photos.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")

from onnx import numpy_helper  # noqa: E402

from fashion import HEADS  # noqa: E402
from fashion.runtime.backends import get_backend  # noqa: E402
from fashion.runtime.bundle import load_manifest, record_artifact  # noqa: E402
from fashion.runtime.errors import BundleError  # noqa: E402
from fashion.runtime.preprocess import preprocess, to_batch  # noqa: E402
from fashion.train.keras_backend import KerasBackend  # noqa: E402


def _keras_twin(onnx_path) -> keras.Model:
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    image = keras.Input((32, 24, 3), name="image")
    x = keras.layers.Rescaling(weights["scale"].item(), offset=weights["shift"].item(), name="rescaling")(image)
    for i, name in enumerate(("conv1", "conv2")):
        kernel = np.transpose(weights[f"{name}_w"], (2, 3, 1, 0))  # OIHW -> HWIO
        x = keras.layers.ZeroPadding2D(1, name=f"pad{i}")(x)
        conv = keras.layers.Conv2D(
            kernel.shape[-1], 3, strides=2, padding="valid", name=name, activation="relu" if name == "conv1" else None
        )
        x = conv(x)
        conv.set_weights([kernel, weights[f"{name}_b"]])
    x = keras.layers.Activation("relu", name="top_activation")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = {}
    for head in HEADS:
        dense = keras.layers.Dense(weights[f"{head}_kernel"].shape[1], activation="softmax", name=head)
        outputs[head] = dense(pooled)
        dense.set_weights([weights[f"{head}_kernel"], weights[f"{head}_bias"]])
    return keras.Model(image, outputs)


@pytest.fixture(scope="module")
def keras_bundle(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("keras_bundle") / "bundle"
    shutil.copytree(tiny_bundle, root)
    _keras_twin(root / "model_fp32.onnx").save(root / "model.keras")
    record_artifact(root, "keras", "model.keras", format="keras", precision="fp32")
    return root


@pytest.fixture(scope="module")
def batch(sample_dir):
    return to_batch([preprocess(p, 32, 24) for p in sorted((sample_dir / "images").glob("*.jpg"))[:6]])


def test_keras_backend_matches_onnxruntime_on_the_tiny_bundle(keras_bundle, batch):
    bundle = load_manifest(keras_bundle)
    onnx_backend = get_backend("onnxruntime").open(bundle.artifact_path("onnx_fp32"), bundle.artifacts["onnx_fp32"])
    keras_backend = KerasBackend.open(bundle.artifact_path("keras"), bundle.artifacts["keras"], threads=1)
    try:
        assert keras_backend.output_sizes() == onnx_backend.output_sizes()
        reference = onnx_backend.infer(batch, feature_map=True)
        got = keras_backend.infer(batch, feature_map=True)
        assert set(got) == set(HEADS) | {"feature_map"}
        for name in got:
            assert got[name].dtype == np.float32 and got[name].shape == reference[name].shape
            np.testing.assert_allclose(got[name], reference[name], atol=1e-5, err_msg=name)
        again = keras_backend.infer(batch[:2])  # another batch size: still the compiled path, same numbers
        np.testing.assert_allclose(again["gender"], got["gender"][:2], atol=1e-6)
        assert keras_backend.providers[0].startswith("keras ")
    finally:
        keras_backend.close()
        onnx_backend.close()


def test_keras_backend_opens_a_bundle_directory_and_refuses_what_is_not_a_model(keras_bundle, tmp_path):
    backend = KerasBackend.open(keras_bundle)
    assert set(backend.output_sizes()) == set(HEADS)
    with pytest.raises(BundleError, match="no Keras model file"):
        KerasBackend.open(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a loadable Keras model"):
        KerasBackend.open(tmp_path / "model.keras")


def test_keras_is_registered_as_a_backend_plugin():
    """Found through the ``fashion.backends`` entry point, so the runtime never imports fashion.train itself."""
    from importlib import metadata

    names = {ep.name: ep.value for ep in metadata.entry_points(group="fashion.backends")}
    if "keras" not in names:
        pytest.skip("the fashion.backends entry point is not installed yet (reinstall the package: pip install -e .)")
    assert names["keras"] == "fashion.train.keras_backend:KerasBackend"
    assert get_backend("keras") is KerasBackend
