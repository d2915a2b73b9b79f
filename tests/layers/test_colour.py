"""ColourStatistics: what it measures on made-up and real photos, and that ONNX computes the same."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fashion.layers import ColourStatistics, load_keras_model  # noqa: E402
from fashion.runtime.preprocess import preprocess, to_batch  # noqa: E402

HEIGHT, WIDTH = 64, 48


def _stats(images: np.ndarray, **options) -> np.ndarray:
    return keras.ops.convert_to_numpy(ColourStatistics(**options)(images.astype(np.float32)))


def _parts(layer: ColourStatistics, row: np.ndarray) -> dict[str, np.ndarray]:
    bins = layer.hue_bins * layer.saturation_bins * layer.value_bins
    return {
        "histogram": row[:bins].reshape(layer.hue_bins, layer.saturation_bins * layer.value_bins),
        "mean": row[bins : bins + 5],
        "std": row[bins + 5 : bins + 10],
        "chroma": row[bins + 10 : bins + 12],
        "fraction": row[bins + 12],
    }


def _real(sample_dir, count=6) -> np.ndarray:
    paths = sorted((sample_dir / "images").glob("*.jpg"))[:count]
    return to_batch([preprocess(p, HEIGHT, WIDTH) for p in paths])


def test_a_red_square_on_white_is_measured_as_red_and_its_area():
    image = np.full((1, HEIGHT, WIDTH, 3), 255, np.uint8)
    image[0, 16:48, 12:36] = (200, 20, 20)  # 32 x 24 of 64 x 48 pixels: a quarter
    layer = ColourStatistics()
    parts = _parts(layer, _stats(image)[0])
    assert parts["fraction"] == pytest.approx(0.25, abs=0.01)
    hue, sv = np.unravel_index(np.argmax(parts["histogram"]), parts["histogram"].shape)
    assert hue == 0 and sv == 3 * 4 + 3  # red hue; saturation 0.9 and value 0.78 fall in the top bins
    assert parts["histogram"].max() == pytest.approx(1.0, abs=1e-3)  # every foreground pixel in one bin
    np.testing.assert_allclose(parts["mean"][:3], np.array([200, 20, 20]) / 255, atol=1e-3)
    assert parts["chroma"][0] > 0.8 and abs(parts["chroma"][1]) < 1e-3  # saturation-weighted hue vector


def test_a_white_product_falls_back_to_all_pixels():
    parts = _parts(ColourStatistics(), _stats(np.full((1, HEIGHT, WIDTH, 3), 250, np.uint8))[0])
    assert parts["fraction"] == 0.0
    assert np.sum(parts["histogram"] ** 2) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(parts["mean"][:3], 250 / 255, atol=1e-4)


def test_real_photos_give_normalised_mirror_invariant_statistics(sample_dir):
    images = _real(sample_dir)
    stats = _stats(images)
    layer = ColourStatistics()
    assert stats.shape == (len(images), layer.size)
    for row in stats:
        parts = _parts(layer, row)
        assert np.sum(parts["histogram"] ** 2) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 < parts["fraction"] < 1.0
    np.testing.assert_allclose(_stats(images[:, :, ::-1]), stats, atol=1e-5)
    distinct_images = len({image.tobytes() for image in images})
    assert len({tuple(np.round(r, 3)) for r in stats}) == distinct_images  # different photos, different colours


def test_a_model_with_the_layer_saves_and_loads_in_safe_mode(tmp_path, sample_dir):
    inputs = keras.Input((HEIGHT, WIDTH, 3), name="image")
    model = keras.Model(inputs, ColourStatistics(hue_bins=6, pool=1, name="colour_statistics")(inputs))
    path = tmp_path / "colour.keras"
    model.save(path)
    again = load_keras_model(path)
    assert again.get_layer("colour_statistics").hue_bins == 6
    images = _real(sample_dir, 3).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(images)), keras.ops.convert_to_numpy(model(images)))


def test_the_onnx_graph_computes_the_same_statistics(sample_dir):
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    import onnxruntime as ort

    inputs = keras.Input((HEIGHT, WIDTH, 3), name="image")
    model = keras.Model(inputs, ColourStatistics()(inputs))
    spec = (tf.TensorSpec((None, HEIGHT, WIDTH, 3), tf.float32, name="image"),)
    serve = tf.function(lambda image: {"colour": model(image)}, input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = _real(sample_dir, 16).astype(np.float32)
    onnx_out = session.run(None, {"image": images})[0]
    keras_out = keras.ops.convert_to_numpy(model(images))
    # square roots of the tiny background weight amplify float differences to ~1e-4 at most
    np.testing.assert_allclose(onnx_out, keras_out, atol=5e-4)
    assert "OneHot" not in {node.op_type for node in proto.graph.node}


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        ColourStatistics(hue_bins=0)
