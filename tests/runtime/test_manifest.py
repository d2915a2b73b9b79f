"""The typed manifest: validation that names the field, schema 1 -> 2 migration, and the one editor."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from fashion.runtime import BundleError, Classifier
from fashion.runtime.bundle import load_manifest
from fashion.runtime.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    ArtifactEntry,
    InputSpec,
    Manifest,
    PreprocessSpec,
    SplitRecord,
    Timing,
    absolute_paths,
    edit_manifest,
    portable_training,
    read_manifest,
)

SCHEMA1 = Path(__file__).parent / "fixtures" / "bundle_schema1.json"


def _raw(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


@pytest.fixture
def schema1_bundle(shipped_bundle, tmp_path) -> Path:
    """The shipped bundle's files under its schema-1 manifest, as released before v2 (copied: a bundle's files
    are inside its folder, links out of it are refused)."""
    root = tmp_path / "schema1"
    root.mkdir()
    for path in shipped_bundle.iterdir():
        if path.name != MANIFEST:
            shutil.copy(path, root / path.name)
    shutil.copy(SCHEMA1, root / MANIFEST)
    return root


def test_typed_view_of_the_tiny_bundle(tiny_bundle) -> None:
    manifest = read_manifest(tiny_bundle)
    assert manifest.schema_version == SCHEMA_VERSION == 2
    assert isinstance(manifest.input, InputSpec) and manifest.input_size == (32, 24)
    assert isinstance(manifest.preprocessing, PreprocessSpec) and manifest.preprocessing.pad_value == 255
    entry = manifest.artifacts["onnx_fp32"]
    assert isinstance(entry, ArtifactEntry) and entry.format == "onnx" and len(entry.sha256) == 64
    assert manifest.input.height == 32 and entry.precision == "fp32"
    # typed all the way: no dict-style reading of the sections (to_dict() is the JSON form, for writing)
    assert not hasattr(entry, "get") and not hasattr(entry, "__getitem__")
    assert not hasattr(manifest.input, "get") and not hasattr(manifest.preprocessing, "__getitem__")
    assert not hasattr(manifest, "get") and not hasattr(manifest, "__getitem__")  # the manifest itself neither
    assert Manifest.from_dict(manifest.to_dict(), source="again").to_dict() == manifest.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["input"].pop("height"), r"bundle\.json: input lacks 'height'"),
        (lambda m: m["input"].update(width="96"), r"input\.width must be a positive integer"),
        (lambda m: m.update(heads="gender"), r"heads must be a non-empty list"),
        (lambda m: m.pop("preprocessing"), r"manifest lacks 'preprocessing'"),
        (lambda m: m["preprocessing"].update(pad_value=300), r"preprocessing\.pad_value must be an integer 0\.\.255"),
        (lambda m: m["artifacts"]["onnx_fp32"].pop("sha256"), r"artifacts\.onnx_fp32 has no sha256"),
        (lambda m: m["artifacts"]["onnx_fp32"].update(file="/etc/passwd"), r"must be a file name inside the bundle"),
        (lambda m: m["artifacts"]["onnx_fp32"].update(file="../x.onnx"), r"must be a file name inside the bundle"),
        (lambda m: m["artifacts"]["onnx_fp32"].update(timings=[{"cpu": "x"}]), r"timings\[0\] lacks 'p50_ms'"),
        (lambda m: m.update(schema_version=3), r"schema_version 3 is not supported"),
        (
            lambda m: m.update(pinned_artifact="onnx_int8"),
            r"pinned_artifact names unknown artifact 'onnx_int8' "
            r"\(known: onnx_fp32\)",
        ),
        (
            lambda m: m.update(facts={"default_artifact": {"artifact": "tensorrt_fp16"}}),
            r"facts\.default_artifact names unknown artifact 'tensorrt_fp16' \(known: onnx_fp32\)",
        ),
        (lambda m: m.update(default_artifact="onnx_int8"), r"default_artifact names unknown artifact 'onnx_int8'"),
    ],
)
def test_invalid_manifest_is_refused_naming_the_field(tiny_bundle, change, message) -> None:
    data = _raw(tiny_bundle)
    change(data)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(data, source=tiny_bundle / MANIFEST)


def test_schema1_migration_of_the_shipped_manifest() -> None:
    old = json.loads(SCHEMA1.read_text())
    assert old["schema_version"] == 1 and old["default_artifact"] == "onnx_int8"
    manifest = Manifest.from_dict(old, source=SCHEMA1)
    new = manifest.to_dict()
    assert manifest.source_schema == 1 and new["schema_version"] == 2
    assert "default_artifact" not in new and manifest.recorded_default == "onnx_int8"
    assert absolute_paths(old) and absolute_paths(new) == []
    training = new["training"]
    assert training["weights"]["name"] == "efficientnetb0_imagenet_notop.weights.h5"
    assert training["data"] == {
        **training["data"],
        "name": "fashion-product-images",
        "layout": "kaggle",
        "styles_csv": "styles.csv",
        "images_dir": "images",
        "rows": 40149,
    }
    assert "loader_report" not in training
    # everything that is not a path or the default is carried over unchanged
    for key in ("heads", "num_classes", "input", "preprocessing", "metrics", "split", "versions", "files"):
        assert new[key] == old[key], key
    assert {k: {f: v for f, v in e.items()} for k, e in new["artifacts"].items()} == old["artifacts"]


def _without_timings(manifest: dict) -> dict:
    """Timing facts are per-host measurements that a later export may re-record; everything else is fixed."""
    copy = json.loads(json.dumps(manifest))
    for entry in copy.get("artifacts", {}).values():
        entry.pop("timings", None)
    return copy


def test_shipped_bundle_is_schema2_with_its_original_files(shipped_bundle) -> None:
    shipped = _raw(shipped_bundle)
    old = json.loads(SCHEMA1.read_text())
    assert shipped["schema_version"] == 2 and absolute_paths(shipped) == []
    assert _without_timings(shipped)["artifacts"] == _without_timings(old)["artifacts"]
    assert shipped["files"] == old["files"]
    load_manifest(shipped_bundle)  # every recorded sha256 still matches its (unchanged) file
    migrated = Manifest.from_dict(old).to_dict()
    migrated["training"]["weights"] = shipped["training"]["weights"]  # sha256 only where the weights exist
    # `fashion-train evaluate --record` may add scores later (e.g. colour_families); nothing migrated may change
    added = {
        split: {key: scores[key] for key in scores if key not in migrated["metrics"].get(split, {})}
        for split, scores in shipped["metrics"].items()
    }
    for split, extra in added.items():
        migrated["metrics"].setdefault(split, {}).update(extra)
    assert _without_timings(migrated) == _without_timings(shipped)


def test_weights_digest_only_when_the_file_exists() -> None:
    record = portable_training({"weights": "/nowhere/at/all/w.h5", "data": "/x/fashion-product-images"})
    assert record["weights"] == {"name": "w.h5"}
    assert record["data"] == {"name": "fashion-product-images", "layout": "kaggle"}
    assert portable_training(record) == record  # idempotent


def test_init_from_is_recorded_by_name_and_keras_digest(shipped_bundle) -> None:
    """A run started from a bundle (--init-from) records that bundle's name and its Keras weights' digest, never
    the machine path; a bundle that is not there keeps its name only."""
    keras = _raw(shipped_bundle)["artifacts"]["keras"]
    record = portable_training({"init_from": str(Path(shipped_bundle).resolve())})
    assert record["init_from"] == {
        "name": Path(shipped_bundle).name,
        "keras": {"file": keras["file"], "sha256": keras["sha256"]},
    }
    assert absolute_paths(record) == []
    assert portable_training(record) == record  # idempotent
    assert portable_training({"init_from": "/nowhere/at/all/b"})["init_from"] == {"name": "b"}


def test_schema1_bundle_loads_and_predicts_like_the_shipped_one(schema1_bundle, shipped_bundle, sample_dir) -> None:
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:4]
    with (
        Classifier.load(schema1_bundle, precision="fp32") as old,
        Classifier.load(shipped_bundle, precision="fp32") as new,
    ):
        assert old.bundle.manifest.source_schema == 1 and new.bundle.manifest.source_schema == 2
        for photo in photos:
            a, b = old.predict(photo), new.predict(photo)
            assert {h: p.label for h, p in a.heads.items()} == {h: p.label for h, p in b.heads.items()}
            assert np.isclose(a.heads["articleType"].confidence, b.heads["articleType"].confidence)


def test_editor_writes_once_atomically_and_migrates(schema1_bundle) -> None:
    path = schema1_bundle / MANIFEST
    path.unlink()
    shutil.copy(SCHEMA1, path)  # a real file: the editor replaces it
    with edit_manifest(schema1_bundle) as draft:
        draft.put_metrics("smoke", {"images": 3})
        draft.put("note", {"text": "kept"})
        assert draft.manifest.metrics["smoke"] == {"images": 3}
        assert json.loads(path.read_text())["schema_version"] == 1  # nothing written inside the block
    written = _raw(schema1_bundle)
    assert written["schema_version"] == 2 and written["metrics"]["smoke"] == {"images": 3}
    assert written["note"] == {"text": "kept"} and absolute_paths(written) == []


def test_editor_writes_nothing_when_the_block_raises(bundle) -> None:
    before = (bundle / MANIFEST).read_bytes()
    with pytest.raises(RuntimeError, match="gate refused"):
        with edit_manifest(bundle) as draft:
            draft.drop_artifact("onnx_fp32")
            raise RuntimeError("gate refused")
    assert (bundle / MANIFEST).read_bytes() == before
    assert not [p for p in bundle.iterdir() if p.name.endswith(".tmp")]


def test_editor_artifact_operations(bundle) -> None:
    shutil.copy(bundle / "model_fp32.onnx", bundle / "model_copy.onnx")
    timing = {
        "cpu": "Test CPU",
        "flags": ["avx2"],
        "threads": 1,
        "batch": 1,
        "p50_ms": 1.5,
        "measured_at": "2026-01-01T00:00:00Z",
    }
    with edit_manifest(bundle) as draft:
        entry = draft.put_artifact(
            "onnx_copy",
            {
                "file": "model_copy.onnx",
                "format": "onnx",
                "precision": "fp32",
                "outputs": draft.manifest.artifacts["onnx_fp32"].outputs,
            },
        )
        assert entry.sha256 == draft.manifest.artifacts["onnx_fp32"].sha256 and entry.bytes
        draft.update_artifact("onnx_copy", accuracy={"val": {"images": 2}})
        draft.add_timing("onnx_copy", Timing.from_dict(timing))
        draft.put("default_artifact", "onnx_copy")  # old callers: recorded as a fact, never a choice
        draft.put("pinned_artifact", "onnx_copy")
    manifest = read_manifest(bundle)
    assert manifest.artifacts["onnx_copy"].timings == [Timing.from_dict(timing)]
    assert manifest.artifacts["onnx_copy"].timings[0].to_dict() == timing
    assert manifest.artifacts["onnx_copy"].accuracy == {"val": {"images": 2}}
    assert manifest.recorded_default == "onnx_copy" and manifest.pinned_artifact == "onnx_copy"
    assert "default_artifact" not in _raw(bundle)
    with edit_manifest(bundle) as draft:
        draft.drop_artifact("onnx_copy")  # also forgets facts and pins naming it
    manifest = read_manifest(bundle)
    assert "onnx_copy" not in manifest.artifacts and manifest.recorded_default is None
    assert manifest.pinned_artifact is None


def test_editor_refuses_bad_changes_when_made(bundle) -> None:
    with edit_manifest(bundle) as draft:
        with pytest.raises(BundleError, match="does not exist"):
            draft.put_artifact("ghost", {"file": "ghost.onnx", "format": "onnx"})
        with pytest.raises(BundleError, match=r"no artifact 'ghost' \(known: onnx_fp32\)"):
            draft.update_artifact("ghost", accuracy={})
        with pytest.raises(BundleError, match="input lacks 'height'"):
            draft.put("input", {"width": 3})
        with pytest.raises(BundleError, match="already open"):
            with edit_manifest(bundle):
                pass
    assert read_manifest(bundle).input_size == (32, 24)


def test_concurrent_editors_do_not_lose_updates(bundle) -> None:
    def worker(index: int) -> None:
        for round_ in range(5):
            with edit_manifest(bundle) as draft:
                draft.put_metrics(f"w{index}-{round_}", {"n": round_})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {f"w{i}-{r}" for i in range(4) for r in range(5)} <= set(read_manifest(bundle).metrics)


def test_portable_path_keeps_names_not_machine_paths(tmp_path) -> None:
    from fashion.runtime.manifest import portable_path

    assert portable_path("data/splits/x.csv") == "data/splits/x.csv"
    assert portable_path(tmp_path / "data" / "x.csv", base=tmp_path) == "data/x.csv"
    assert portable_path("/elsewhere/on/the/machine/x.csv", base=tmp_path) == "x.csv"


def test_rewriting_keeps_the_order_of_artifact_fields(tiny_bundle) -> None:
    data = _raw(tiny_bundle)
    entry = data["artifacts"]["onnx_fp32"]
    data["artifacts"]["onnx_fp32"] = dict(reversed(list(entry.items())))
    again = Manifest.from_dict(data).to_dict()["artifacts"]["onnx_fp32"]
    assert list(again) == list(reversed(list(entry)))


def test_the_manifest_package_keeps_one_import_path_and_load_bundle_names_the_loader(schema1_bundle, shipped_bundle):
    import fashion.runtime as runtime
    import fashion.runtime.manifest as package
    from fashion.runtime.bundle import load_bundle
    from fashion.runtime.manifest import editor, files, migration, schema

    # every name the single module had is still importable from fashion.runtime.manifest, from one home each
    assert package.Manifest is schema.Manifest and package.migrate is migration.migrate
    assert package.edit_manifest is editor.edit_manifest and package.sha256_file is files.sha256_file
    assert runtime.load_bundle is load_bundle is load_manifest  # the old name stays an alias
    # schema 1 (migrated on read) and schema 2 (the shipped bundle) both load through load_bundle
    old, new = load_bundle(schema1_bundle, verify_hashes=False), load_bundle(shipped_bundle, verify_hashes=False)
    assert old.manifest.source_schema == 1 and new.manifest.source_schema == 2
    assert old.manifest.schema_version == new.manifest.schema_version == SCHEMA_VERSION
    assert old.artifacts.keys() == new.artifacts.keys()


def test_split_timings_and_preprocessing_are_typed_sections(shipped_bundle) -> None:
    manifest = read_manifest(shipped_bundle)
    assert isinstance(manifest.split, SplitRecord) and len(manifest.split.sha256 or "") == 64
    assert manifest.recorded_split_file == "data/splits/fashion-product-images.csv"
    assert Manifest.from_dict(json.loads(SCHEMA1.read_text())).recorded_split_file == manifest.recorded_split_file
    timing = manifest.artifacts["onnx_fp32"].timings[0]
    assert isinstance(timing, Timing) and timing.batch == 1 and timing.p50_ms > 0 and "avx2" in (timing.flags or ())
    assert Manifest.from_dict(manifest.to_dict()) == manifest  # the typed sections round-trip through JSON
    spec = PreprocessSpec.from_dict(
        {"range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": 0.5, "pad_value": [1, 2, 3]}
    )
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.5, 0.5, 0.5) and not spec.extra
    assert spec.pad_rgb == (1, 2, 3) and PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert PreprocessSpec() == PreprocessSpec.from_dict({}) == manifest.preprocessing  # one set of defaults
    with pytest.raises(BundleError, match=r"preprocessing\.std must be"):
        PreprocessSpec.from_dict({"std": [0, 1, 1]})
    with pytest.raises(BundleError, match=r"split lacks 'file'"):
        Manifest.from_dict({**_raw(shipped_bundle), "split": {"sha256": "0" * 64}})
