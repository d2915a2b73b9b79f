"""Test-time flip (``tta``) on the tiny bundle and real sample photos: the mean of a photo and its mirror."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from fashion import HEADS
from fashion.runtime import Classifier
from fashion.runtime.cli import main
from fashion.runtime.results import Prediction


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    with Classifier.load(tiny_bundle, threads=1) as classifier:
        yield classifier


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))[:5]


def probabilities(prediction: Prediction, head: str) -> dict[str, float]:
    """Every class's probability of ``head`` (the prediction must list all classes in its top-k)."""
    return dict(prediction.heads[head].top_k)


def all_classes(clf: Classifier) -> int:
    return max(len(clf.bundle.labels[head]) for head in HEADS)


def mirrored(tensor: np.ndarray) -> np.ndarray:
    return np.asarray(ImageOps.mirror(Image.fromarray(tensor)))


def test_tta_is_the_mean_of_the_photo_and_its_mirror(clf, photos):
    k = all_classes(clf)
    for photo in photos:
        tensor = clf.preprocess(photo)
        assert np.array_equal(clf.preprocess(tensor), tensor)  # an array at input size passes unchanged
        plain = clf.predict(tensor, top_k=k)
        flipped = clf.predict(mirrored(tensor), top_k=k)
        averaged = clf.predict(photo, top_k=k, tta=True)
        for head in HEADS:
            a, b, got = probabilities(plain, head), probabilities(flipped, head), probabilities(averaged, head)
            assert got.keys() == a.keys()
            expected = np.array([(a[label] + b[label]) / 2 for label in a])
            np.testing.assert_allclose([got[label] for label in a], expected, atol=1e-5)
            assert averaged.heads[head].label == max(got, key=got.__getitem__)


def test_the_tiny_model_is_not_flip_invariant_so_tta_changes_something(clf, photos):
    k = all_classes(clf)
    tensor = clf.preprocess(photos[0])
    plain, averaged = clf.predict(tensor, top_k=k), clf.predict(tensor, top_k=k, tta=True)
    differences = [
        abs(probabilities(plain, head)[label] - probabilities(averaged, head)[label])
        for head in HEADS
        for label in probabilities(plain, head)
    ]
    assert max(differences) > 1e-4


def test_a_symmetric_photo_gives_the_same_answer_with_and_without_tta(clf, photos):
    tensor = clf.preprocess(photos[1])
    half = tensor.shape[1] // 2
    symmetric = np.concatenate([tensor[:, :half], tensor[:, :half][:, ::-1]], axis=1)
    assert np.array_equal(mirrored(symmetric), symmetric)
    k = all_classes(clf)
    plain, averaged = clf.predict(symmetric, top_k=k), clf.predict(symmetric, top_k=k, tta=True)
    for head in HEADS:
        a, b = probabilities(plain, head), probabilities(averaged, head)
        np.testing.assert_allclose([b[label] for label in a], list(a.values()), atol=1e-6)
        assert plain.heads[head].label == averaged.heads[head].label


def test_predict_batch_with_tta_matches_predict_with_tta(clf, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:100])
    inputs = [photos[0], broken, *photos[1:]]
    k = all_classes(clf)
    items = clf.predict_batch(inputs, batch_size=2, top_k=k, tta=True, decode_threads=1)
    assert [item.ok for item in items] == [True, False] + [True] * (len(photos) - 1)
    for item, photo in zip([items[0], *items[2:]], photos):
        single = clf.predict(photo, top_k=k, tta=True)
        assert item.prediction is not None
        for head in HEADS:
            a, b = probabilities(single, head), probabilities(item.prediction, head)
            np.testing.assert_allclose([b[label] for label in a], list(a.values()), atol=1e-5)


def test_tta_is_off_by_default(clf, photos):
    k = all_classes(clf)
    default, off = clf.predict(photos[2], top_k=k), clf.predict(photos[2], top_k=k, tta=False)
    assert default.heads == off.heads


def test_cli_tta_runs_and_writes_the_averaged_predictions(tiny_bundle, clf, photos):
    result = CliRunner().invoke(
        main, [str(tiny_bundle), *map(str, photos[:2]), "--tta", "--top-k", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    for record, photo in zip(records, photos[:2]):
        expected = clf.predict(photo, top_k=2, tta=True)
        for head in HEADS:
            assert record["heads"][head]["label"] == expected.heads[head].label
            assert record["heads"][head]["confidence"] == pytest.approx(expected.heads[head].confidence, abs=1e-5)


def test_cli_tta_with_a_server_is_a_usage_error(photos):
    result = CliRunner().invoke(main, ["--server", "http://127.0.0.1:1", str(photos[0]), "--tta"])
    assert result.exit_code == 2
    assert "--tta" in result.stderr


def test_cli_help_describes_tta():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "mirrored photo" in " ".join(result.stdout.split())
