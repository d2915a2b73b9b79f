"""Where the data, the split file and the backbone weights are, resolved one way for every command.

Each resolver takes what the user passed (an option), then an environment variable, then the
conventional places beside the working directory and the repository, and raises ``DataError`` with
the list of places it looked and the option or variable to use when none fits. The project's data
constants (default split, seeds, the missing-label value) live here so no other module re-declares them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import DataError, DataLayoutError

#: The repository root (this file is fashion/data/paths.py).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The committed train/val/test split, relative to the repository or the working directory.
DEFAULT_SPLIT = Path("data") / "splits" / "fashion-product-images.csv"
#: The committed sample of real images (Kaggle layout) used by the tests and the demo.
SAMPLE_DIR = Path("data") / "sample"
#: Seed of the committed split and of every seeded subset (export gates, benchmarks, training previews).
SPLIT_SEED = 20261127
#: Integer label of a missing label, or of one the model's vocabulary does not have; scores skip it.
MISSING = -1

DATA_ENV = "FASHION_SHARED_DATA"
WEIGHTS_ENV = "FASHION_EFFICIENTNET_WEIGHTS"
SHARED_DATA = Path("shared") / "datasets" / "fashion-product-images"
WEIGHTS_FILE = "efficientnetb0_imagenet_notop.weights.h5"
SHARED_WEIGHTS = Path("shared") / "weights" / WEIGHTS_FILE


def _bases() -> list[Path]:
    """Folders whose neighbourhood holds ``shared/``: the working directory's parent, the repo's parent, cwd."""
    out: list[Path] = []
    for base in (Path.cwd().parent, REPO_ROOT.parent, Path.cwd()):
        if base not in out:
            out.append(base)
    return out


def is_kaggle_layout(folder: Path) -> bool:
    return (folder / "styles.csv").is_file() and (folder / "images").is_dir()


def find_layout(data_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(styles.csv, images/) in ``data_dir`` or one folder below it (Kaggle zips nest one level)."""
    root = Path(data_dir)
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in candidates:
        if is_kaggle_layout(folder):
            return folder / "styles.csv", folder / "images"
    raise DataLayoutError(
        f"{root}: expected Kaggle layout (styles.csv and images/<id>.jpg) here or one folder below"
        + ("" if root.exists() else " (no such folder)")
    )


def shared_data_candidates() -> list[Path]:
    """Where the shared dataset is looked for when no folder is given, in order."""
    candidates = [Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []
    return candidates + [base / SHARED_DATA for base in _bases()]


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None, option: str = "--data") -> Path:
    """The labelled image folder: ``explicit`` (must be Kaggle layout), then $FASHION_SHARED_DATA, then ../shared.

    Returns the folder as given (``find_layout`` also accepts one nesting level).
    """
    if explicit:
        find_layout(explicit)  # raises DataLayoutError naming the folder
        return Path(explicit)
    candidates = shared_data_candidates()
    for candidate in candidates:
        try:
            find_layout(candidate)
        except DataLayoutError:
            continue
        return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"no labelled image folder found: pass {option} DIR (Kaggle layout: styles.csv + images/) "
        f"or set ${DATA_ENV}; looked in {looked}"
    )


def resolve_split_file(
    explicit: str | os.PathLike[str] | None = None,
    recorded: str | None = None,
    bases: Iterable[str | os.PathLike[str]] = (),
    option: str = "--split-file",
) -> Path:
    """The split CSV: ``explicit`` (must exist), then the one a bundle recorded, then the committed default.

    Relative names are tried from the working directory, the repository root and each of ``bases``
    (e.g. the bundle folder).
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"{option} {path}: no such file")
        return path
    names = [Path(recorded)] if recorded else []
    names.append(DEFAULT_SPLIT)
    roots = [Path.cwd(), REPO_ROOT] + [Path(b) for b in bases]
    tried: list[str] = []
    for name in names:
        for root in [Path()] if name.is_absolute() else roots:
            candidate = root / name
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
    raise DataError(f"no split file found: pass {option} FILE (a CSV of id,split); tried {', '.join(tried)}")


def weights_candidates() -> list[Path]:
    """Where the ImageNet backbone weights are looked for when none are given, in order."""
    candidates = [Path(os.environ[WEIGHTS_ENV])] if os.environ.get(WEIGHTS_ENV) else []
    return candidates + [base / SHARED_WEIGHTS for base in _bases()]


def resolve_weights(
    explicit: str | os.PathLike[str] | None = None, download: bool = True, option: str = "--weights"
) -> str:
    """The notop ``.weights.h5`` file: ``explicit`` (must exist), $FASHION_EFFICIENTNET_WEIGHTS, ../shared/weights.

    With none found, ``"imagenet"`` (Keras downloads them) when ``download`` is allowed, else a DataError.
    """
    if explicit:
        if not Path(explicit).is_file():
            raise DataError(f"{option} {explicit}: no such file (expected {WEIGHTS_FILE})")
        return str(explicit)
    candidates = weights_candidates()
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if download:
        return "imagenet"
    raise DataError(
        f"no backbone weights found: pass {option} FILE or set ${WEIGHTS_ENV}; "
        f"looked for {', '.join(str(c) for c in candidates)}"
    )
