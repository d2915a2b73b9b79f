"""Training on the committed sample with the tiny backbone: loss goes down, bundles round-trip, runs resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from fashion import HEADS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample_split(tmp_path_factory, sample_dir) -> Path:
    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])["id"].sort_values().to_numpy()
    rng = np.random.default_rng(0)
    split = np.where(rng.random(len(ids)) < 0.8, "train", "val")
    path = tmp_path_factory.mktemp("split") / "split.csv"
    pd.DataFrame({"id": ids, "split": split}).to_csv(path, index=False)
    return path


def _fit_command(sample_dir, split, out, work, cache, epochs, extra=()):
    """The CPU recipe through the CLI (the GPU recipe's CLI path is tested under JAX in test_gpu_jax.py)."""
    return [
        sys.executable,
        "-m",
        "fashion.train.cli",
        "fit",
        "--data",
        str(sample_dir),
        "--split-file",
        str(split),
        "--out",
        str(out),
        "--work-dir",
        str(work),
        "--cache-dir",
        str(cache),
        "--backbone",
        "tiny",
        "--size",
        "32x24",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        *extra,
    ]


def test_a_few_steps_lower_the_loss(sample_dir, sample_split):
    from fashion.data.dataset import load_dataset
    from fashion.data.images import decode_images
    from fashion.data.labels import build_vocabularies, encode
    from fashion.train.model import build_model, compile_model

    frame, _ = load_dataset(sample_dir)
    vocab = build_vocabularies(frame)
    labels = encode(frame, vocab)
    images = decode_images(list(frame["path"])[:96], (32, 24), workers=1).images.astype(np.float32)
    labels = {h: v[:96] for h, v in labels.items()}
    keras.utils.set_random_seed(0)
    model = build_model({h: len(v) for h, v in vocab.items()}, 32, 24, backbone="tiny", dropout=0.0)
    compile_model(model, 3e-3)
    before = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    after = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    assert after < before * 0.9, (before, after)


def test_missing_labels_are_masked_not_learned():
    from fashion.train.model import masked_sparse_crossentropy

    loss = masked_sparse_crossentropy()
    probs = np.array([[0.9, 0.1], [0.5, 0.5]], np.float32)
    with_missing = float(loss(np.array([0, -1]), probs))
    only_first = float(loss(np.array([0]), probs[:1]))
    assert with_missing == pytest.approx(only_first, rel=1e-6)


def test_fit_writes_a_bundle_that_reloads_and_predicts_identically(sample_dir, sample_split, tmp_path):
    out = tmp_path / "bundle"
    result = subprocess.run(
        _fit_command(sample_dir, sample_split, out, tmp_path / "work", tmp_path / "cache", 2),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["heads"] == list(HEADS)
    assert manifest["input"]["height"] == 32 and manifest["input"]["width"] == 24
    assert set(manifest["metrics"]["val"]["heads"]) == set(HEADS)

    from fashion.runtime.bundle import load_manifest
    from fashion.runtime.preprocess import preprocess, to_batch
    from fashion.train.bundle_io import load_keras_model

    bundle = load_manifest(out)
    model = load_keras_model(out)
    images = sorted((sample_dir / "images").glob("*.jpg"))[:8]
    batch = to_batch([preprocess(p, 32, 24) for p in images])
    first = {h: np.asarray(v) for h, v in model(batch, training=False).items()}
    again = {h: np.asarray(v) for h, v in load_keras_model(out)(batch, training=False).items()}
    for head in HEADS:
        assert first[head].shape == (8, len(bundle.labels[head]))
        np.testing.assert_array_equal(first[head], again[head])
    heads = np.load(out / "head_weights.npz", allow_pickle=False)
    np.testing.assert_array_equal(heads["gender/kernel"], model.get_layer("gender").get_weights()[0])


def test_killed_run_resumes_from_its_checkpoint(sample_dir, sample_split, tmp_path):
    work = tmp_path / "work"
    command = _fit_command(sample_dir, sample_split, tmp_path / "bundle", work, tmp_path / "cache", 40)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = work / "state.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if state_file.exists() and json.loads(state_file.read_text() or "{}").get("phase2_epochs_done", 0) >= 1:
                break
            if process.poll() is not None:
                pytest.fail("training ended before it could be killed")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    done_before = json.loads(state_file.read_text())["phase2_epochs_done"]
    assert done_before >= 1 and (work / "phase2" / "last.weights.h5").exists()

    result = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Epoch {done_before + 1}/40" in result.stdout + result.stderr
    assert "Epoch 1/40" not in result.stdout + result.stderr  # phase 1 is done and phase 2 restarts late
    assert (tmp_path / "bundle" / "bundle.json").exists()


def test_gpu_recipe_runs_a_time_boxed_fine_tune(sample_dir, sample_split, tmp_path):
    """The GPU recipe through the Recipe seam on the CPU: time-boxed cosine, one compiled model, a float32 result."""
    from fashion.train.cli import build_train_data
    from fashion.train.gpu_recipe import GpuRecipe, GpuRecipeConfig
    from fashion.train.recipe import TrainResult

    data = build_train_data(str(sample_dir), str(sample_split))
    recipe = GpuRecipe(GpuRecipeConfig(sizes=[(32, 24)], batch_size=32, seconds_per_size=3.0, backbone="tiny"))
    result = recipe.fit(data, tmp_path / "out")
    assert isinstance(result, TrainResult)
    run = result.training["results"]["sizes"]["32x24"]
    assert run["epochs_run"] >= 1 and len(run["per_epoch"]) == run["epochs_run"]
    assert set(run["val_accuracy"]) == set(HEADS)
    assert all(0.0 <= value <= 1.0 for value in run["val_accuracy"].values())
    assert run["compile_seconds"] >= 0 and run["steady_img_per_s"] > 0 and 0 <= run["data_wait_fraction"] <= 1
    assert run["schedule"]["first_rates"][0] == pytest.approx(0.1 * 3e-4)
    assert result.training["backbone"] == "tiny" and result.training["weights"] is None
    # The bundle model is float32 with the classifier's contract; the scores come from the trained model.
    assert result.model.input_shape[1:] == (32, 24, 3)
    assert all(w.dtype == "float32" for w in result.model.weights)
    assert {h: p.shape[0] for h, p in result.val_probs.items()} == {h: len(data.val) for h in HEADS}
    for head in HEADS:
        assert np.array_equal(result.val_labels[head], data.val.labels[head])
    assert (tmp_path / "out" / "32x24" / "final.weights.npz").exists()
    assert (tmp_path / "out" / "32x24" / "log.csv").exists()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["sizes"]["32x24"]["compile_seconds"] == run["compile_seconds"]


def test_fit_refuses_bad_options_with_a_message_and_exit_2(sample_dir, sample_split, tmp_path):
    from click.testing import CliRunner

    from fashion.train.cli import main

    runner = CliRunner()
    base = [
        "fit",
        "--data",
        str(sample_dir),
        "--split-file",
        str(sample_split),
        "--out",
        str(tmp_path / "b"),
        "--backbone",
        "tiny",
    ]
    result = runner.invoke(main, base + ["--recipe", "cpu", "--size", "32x24", "--size", "64x48"])
    assert result.exit_code == 2 and "Error: the CPU recipe trains one --size" in result.output
    result = runner.invoke(main, base + ["--recipe", "gpu", "--devices", "3", "--size", "32x24"])
    assert result.exit_code == 2 and "Error: --devices 3" in result.output
    assert runner.invoke(main, ["fit", "-h"]).exit_code == 0


def test_cli_gpu_recipe_honours_the_backbone_and_records_timings(sample_dir, sample_split, tmp_path):
    """``fit --recipe gpu --backbone tiny`` trains the tiny network (not EfficientNetB0) and writes its timings."""
    from click.testing import CliRunner

    from fashion.train.bundle_io import load_keras_model
    from fashion.train.cli import main

    out, work = tmp_path / "bundle", tmp_path / "work"
    result = CliRunner().invoke(
        main,
        [
            "fit",
            "--data",
            str(sample_dir),
            "--split-file",
            str(sample_split),
            "--out",
            str(out),
            "--work-dir",
            str(work),
            "--recipe",
            "gpu",
            "--backbone",
            "tiny",
            "--size",
            "32x24",
            "--epochs",
            "1",
            "--batch-size",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output[-3000:]
    training = json.loads((out / "bundle.json").read_text())["training"]
    assert training["recipe"] == "gpu" and training["backbone"] == "tiny"
    size = training["results"]["sizes"]["32x24"]
    assert size["compile_seconds"] >= 0 and size["steady_img_per_s"] > 0 and size["epochs_run"] == 1
    model = load_keras_model(out)
    names = {layer.name for layer in model.layers}
    assert "stem_conv" in names and not any(name.startswith("block") for name in names)
    assert not (work / "labels.json").exists(), "the vocabulary is passed in memory, not through a file"

    # --init-from starts from that bundle (a near-zero learning rate keeps its weights), with sharp copies
    # (here: the sample's own photos stand in) and the robust augmentation on a --limit subset, at a larger
    # input size than the bundle's (the weights do not depend on it: fine-tuning at a new resolution).
    again = tmp_path / "again"
    result = CliRunner().invoke(
        main,
        [
            "fit",
            "--data",
            str(sample_dir),
            "--split-file",
            str(sample_split),
            "--out",
            str(again),
            "--work-dir",
            str(tmp_path / "work2"),
            "--recipe",
            "gpu",
            "--backbone",
            "tiny",
            "--size",
            "40x32",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--learning-rate",
            "1e-12",
            "--init-from",
            str(out),
            "--sharp",
            str(sample_dir / "images"),
            "--augment",
            "robust",
            "--limit",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads((again / "bundle.json").read_text())["training"]
    started_from = json.loads((out / "bundle.json").read_text())["artifacts"]["keras"]
    assert record["init_from"] == {  # the bundle by name and weights digest, no machine path
        "name": out.name,
        "keras": {"file": "model.keras", "sha256": started_from["sha256"]},
    }
    assert record["augment"]["blur_probability"] > 0
    assert record["limit"] == 40 and record["sharp_train_images"] == 40 and record["train_images"] == 40
    for before, after in zip(model.weights, load_keras_model(again).weights):
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)


def test_time_cosine_counts_training_time_only(clock):
    """Compilation (the first step) and validation passes do not use up the --gpu-seconds window."""
    from fashion.train.gpu_recipe import TimeCosine
    from fashion.train.model import build_model, compile_model

    model = build_model({h: 2 for h in HEADS}, 32, 24, backbone="tiny")
    compile_model(model, 1.0)
    schedule = TimeCosine(1.0, seconds=10.0, clock=clock, resolution=0.0)
    schedule.set_model(model)
    schedule.on_epoch_begin(0)
    schedule.on_train_batch_begin(0)
    clock.now += 600.0  # a ten-minute compile inside the first step's call
    schedule.on_train_batch_begin(1)
    assert schedule.first_rates[:2] == [pytest.approx(0.1), pytest.approx(0.1)]
    clock.now += 5.0
    schedule.on_train_batch_begin(2)
    assert schedule.applied == pytest.approx(schedule.rate(0.5)) and 0.02 < schedule.applied < 1.0
    schedule.on_test_begin()
    clock.now += 300.0  # validation (and its compilation) is not training time
    logs = {}
    schedule.on_epoch_end(0, logs)
    assert logs["train_seconds"] == pytest.approx(5.0)
    schedule.on_epoch_begin(1)
    clock.now += 4.0
    schedule.on_train_batch_begin(0)
    assert not model.stop_training
    clock.now += 1.5
    schedule.on_train_batch_begin(1)
    assert model.stop_training and schedule.applied == pytest.approx(0.02)
    resumed = TimeCosine(1.0, seconds=10.0, clock=clock, already=5.0)
    assert resumed.progress() == pytest.approx(0.5)


def test_sharp_copies_join_the_training_part_with_their_labels(tmp_path, sample_dir):
    """--sharp: one more row per id with a sharper copy, same labels; ids without one are not repeated."""
    import shutil

    from fashion.train.errors import TrainError
    from fashion.train.recipe import Part, limited, with_sharp_copies

    images = sorted((sample_dir / "images").glob("*.jpg"))[:6]
    ids = np.array([int(p.stem) for p in images], np.int64)
    labels = {h: np.arange(len(ids), dtype=np.int32) for h in HEADS}
    part = Part(ids, [str(p) for p in images], labels)
    sharp = tmp_path / "sharp" / "images"
    sharp.mkdir(parents=True)
    for p in images[:2]:
        shutil.copy(p, sharp / p.name)
    merged, added = with_sharp_copies(part, tmp_path / "sharp")
    assert added == 2 and len(merged) == 8
    assert list(merged.ids[6:]) == list(ids[:2])
    assert merged.paths[6].startswith(str(sharp))
    for h in HEADS:
        assert list(merged.labels[h][6:]) == list(labels[h][:2])
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(TrainError, match="none of the 6 ids"):
        with_sharp_copies(part, empty)
    small = limited(part, 4)
    assert len(small) == 4 and set(small.ids) <= set(ids)
    assert limited(part, 4).ids.tolist() == small.ids.tolist(), "seeded"
    assert limited(part, None) is part


def test_backend_is_chosen_per_device():
    from fashion.train import default_backend

    assert default_backend() in ("tensorflow", "jax")


def test_evaluate_scores_sharp_copies_and_other_shops(tmp_path, shipped_bundle, shared_data):
    """`evaluate --sharp --other-shops`: one report per set (thumbnails, sharp copies, other shops), recorded."""
    import shutil

    from click.testing import CliRunner

    from fashion.train.cli import main

    sharp = shared_data.parent / "fashion-product-images-sharp"
    others = shared_data.parent / "other-shops-val"
    if not (sharp / "images").is_dir() or not (others / "labels.csv").is_file():
        pytest.skip("the sharp copies or other-shops-val are not beside the shared data")
    ids = sorted(int(p.stem) for p in (sharp / "images").glob("*.jpg"))[:12]
    split = tmp_path / "split.csv"
    pd.DataFrame({"id": ids, "split": "test"}).to_csv(split, index=False)
    bundle = Path(shutil.copytree(shipped_bundle, tmp_path / "bundle"))
    out = tmp_path / "report"
    args = ["evaluate", str(bundle), "--data", str(shared_data), "--split-file", str(split), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--sharp", str(sharp), "--other-shops", str(others), "--record"])
    assert result.exit_code == 0, result.output
    for name in ("test-sharp", "other-shops", "other-shops-product"):
        assert f"== {name}" in result.output
        assert (out / name / "metrics.json").is_file()
    # other shops' photos are for validation only: no report shows them (a sharp-copy grid is fine)
    assert (out / "test-sharp" / "sample_predictions.png").is_file()
    assert not list(out.glob("other-shops*/sample_predictions.png"))
    recorded = json.loads((bundle / "bundle.json").read_text())["metrics"]
    assert recorded["test-sharp"]["images"] == recorded["test"]["images"] == len(ids)
    assert recorded["other-shops"]["heads"]["season"]["n"] == 0
    assert 0.5 < recorded["other-shops"]["heads"]["masterCategory"]["accuracy"] <= 1


def test_weight_average_mixes_the_trunk_and_keeps_the_heads():
    """WiSE-FT: trunk = alpha * tuned + (1 - alpha) * pretrained, exactly; heads stay the tuned ones."""
    from fashion.train.average import averaged_model, pretrained_like
    from fashion.train.errors import TrainError
    from fashion.train.model import build_model

    classes = {head: 3 for head in HEADS}
    keras.utils.set_random_seed(1)
    tuned = build_model(classes, 32, 24, backbone="tiny")
    keras.utils.set_random_seed(2)
    pretrained = pretrained_like(tuned, None, backbone="tiny")
    mixed = averaged_model(tuned, pretrained, 0.25, backbone="tiny")
    # matched by path: a shuffled variable order on either side changes nothing
    by_path = {w.path: w for w in pretrained.weights}
    for out, a in zip(mixed.weights, tuned.weights):
        b = by_path[out.path]
        a, b, got = a.numpy(), b.numpy(), out.numpy()
        if out.path.split("/")[0] in HEADS:
            np.testing.assert_array_equal(got, a)
        else:
            np.testing.assert_allclose(got, 0.25 * a + 0.75 * b, rtol=1e-6, atol=1e-7)
    trunk = [w for w in tuned.weights if w.path.split("/")[0] not in HEADS and w.numpy().any()]
    heads = {w.path.split("/")[0] for w in tuned.weights} & set(HEADS)
    assert trunk and heads == set(HEADS), "both trunk and every head are covered"
    with pytest.raises(TrainError, match="alpha"):
        averaged_model(tuned, pretrained, 1.5, backbone="tiny")
    soup = averaged_model(tuned, pretrained, 0.5, backbone="tiny", heads_too=True)
    for out, a, b in zip(soup.weights, tuned.weights, pretrained.weights):
        np.testing.assert_allclose(out.numpy(), 0.5 * a.numpy() + 0.5 * b.numpy(), rtol=1e-6, atol=1e-7)


def test_finalize_states_after_assigning_weights(shipped_bundle):
    """EfficientNet's Normalization derives its statistics when weights are loaded: a copy made with
    set_weights (weight averaging, --init-from) predicts like the bundle only after finalize_states."""
    from fashion.train.bundle_io import load_keras_model
    from fashion.train.model import finalize_states

    loaded = load_keras_model(shipped_bundle)
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 96, 3)).astype(np.float32)
    expected = loaded.predict(x, verbose=0)["gender"]
    copies = []
    for finalize in (False, True):  # finalize before the first predict (which traces the constants in)
        copy = keras.models.clone_model(loaded)
        copy.set_weights(loaded.get_weights())
        if finalize:
            finalize_states(copy)
        copies.append(np.abs(copy.predict(x, verbose=0)["gender"] - expected).max())
    stale, fresh = copies
    assert fresh < 1e-5 and stale > 1e-2, (stale, fresh)


def test_init_from_matches_weights_whose_layer_names_keras_numbered(sample_dir, tmp_path):
    """A bundle whose model was built second in its process holds ``normalization_1/mean`` where a fresh run has
    ``normalization/mean`` (the float32 copy of a trained model is such a bundle): --init-from still starts from
    its weights, in order; a model of another layout is still refused."""
    from fashion.data.dataset import load_dataset
    from fashion.data.labels import build_vocabularies
    from fashion.train.gpu_recipe import TrainError, start_from_bundle
    from fashion.train.model import build_model
    from tests.export.test_export import make_keras_bundle

    bundle = make_keras_bundle(tmp_path / "b", sample_dir, 32, 24, backbone="efficientnetb0", seed=3)
    labels = build_vocabularies(load_dataset(sample_dir)[0])
    classes = {h: len(labels[h]) for h in HEADS}
    keras.utils.set_random_seed(11)
    fresh = build_model(classes, 32, 24, backbone="efficientnetb0")
    from fashion.train.bundle_io import load_keras_model

    trained = load_keras_model(bundle)
    assert [w.path for w in fresh.weights] != [w.path for w in trained.weights], "the names differ: a real test"
    assert not np.allclose(
        fresh.get_layer("stem_conv").get_weights()[0], trained.get_layer("stem_conv").get_weights()[0]
    )
    start_from_bundle(fresh, str(bundle), labels)
    for ours, theirs in zip(fresh.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    with pytest.raises(TrainError, match="no matching weights"):
        start_from_bundle(build_model(classes, 32, 24, backbone="tiny"), str(bundle), labels)


def test_evaluate_split_alone_scores_that_part_of_the_recorded_split_not_every_image(tmp_path, sample_dir):
    """``evaluate --split val`` without --split-file scores the val part of the split file the bundle recorded
    (here the committed one); it used to score every image in --data, train included, under the folder's name."""
    from click.testing import CliRunner

    from fashion.train.cli import main
    from tests.export.test_export import SPLIT_FILE, make_keras_bundle

    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])
    val = ids.merge(pd.read_csv(SPLIT_FILE), on="id").query("split == 'val'")
    assert 0 < len(val) < len(ids)
    bundle = make_keras_bundle(tmp_path / "b", sample_dir)
    result = CliRunner().invoke(main, ["evaluate", str(bundle), "--data", str(sample_dir), "--split", "val"])
    assert result.exit_code == 0, result.output[-3000:]
    assert f"== val ({len(val)} images)" in result.output
    whole = CliRunner().invoke(main, ["evaluate", str(bundle), "--data", str(sample_dir)])
    assert whole.exit_code == 0 and f"== sample ({len(ids)} images)" in whole.output
