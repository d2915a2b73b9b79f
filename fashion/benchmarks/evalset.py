"""The labelled images a benchmark scores: any Kaggle-layout folder, optionally narrowed to one split.

Every image goes through the shared ``fashion.runtime.preprocess`` once, here, and the uint8
tensors are handed to each row's worker process as one .npy file, so every artifact sees exactly
the same pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashion.runtime.bundle import Bundle, sha256_file
from fashion.runtime.errors import InvalidImageError
from fashion.runtime.preprocess import preprocess

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA_ENV = "FASHION_SHARED_DATA"
DEFAULT_SPLIT_FILE = Path("data") / "splits" / "fashion-product-images.csv"


@dataclass
class EvalSet:
    ids: np.ndarray                                   # int64 (N,)
    labels: dict[str, list[str | None]]               # head -> label per image (None: missing)
    images: np.ndarray                                # uint8 (N, H, W, 3), shared preprocessing
    source: dict = field(default_factory=dict)        # what was read: folder, split file, counts


def default_data_dir() -> Path:
    """The shared Fashion Product Images folder: $FASHION_SHARED_DATA, else ../shared/datasets/... beside the repo."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV])
    for base in (Path.cwd().parent, REPO_ROOT.parent, Path.cwd()):
        candidate = base / "shared" / "datasets" / "fashion-product-images"
        if (candidate / "styles.csv").is_file():
            return candidate
    return REPO_ROOT.parent / "shared" / "datasets" / "fashion-product-images"


def resolve_split_file(bundle: Bundle, explicit: str | os.PathLike | None = None) -> Path:
    """--split-file, else the split recorded in the bundle manifest, else the committed split."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"--split-file {path}: no such file")
        return path
    recorded = (bundle.manifest.get("split") or {}).get("file")
    names = [recorded] if recorded else []
    names.append(str(DEFAULT_SPLIT_FILE))
    for name in names:
        for base in (Path.cwd(), REPO_ROOT, bundle.root):
            candidate = Path(name) if Path(name).is_absolute() else base / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"split file not found (tried {names} from the working directory, the repository "
                            f"and {bundle.root}); pass --split-file")


def load_eval_set(bundle: Bundle, data_dir: str | os.PathLike | None = None, split: str | None = "test",
                  split_file: str | os.PathLike | None = None, limit: int | None = None,
                  progress: bool = True, force_split: bool = False) -> EvalSet:
    """Read labels, keep ``split`` when a split file applies, preprocess every image at the bundle's input size.

    A split file applies when ``data_dir`` is the default shared data, ``split_file`` is given or
    ``force_split`` (the user named a split); any other folder is scored whole.
    """
    from tqdm import tqdm

    try:
        from fashion.data.dataset import load_dataset
        from fashion.data.split import attach_split, read_split
    except ImportError as exc:
        raise ImportError(f"reading a dataset needs pandas ({exc}) — pip install fashion-edge[bench]") from exc

    use_split = data_dir is None or split_file is not None or force_split
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    frame, report = load_dataset(data_dir)
    source = {"data": str(data_dir), "styles_csv": report.styles_csv, "rows_with_image": len(frame)}
    if use_split:
        split_path = resolve_split_file(bundle, split_file)
        frame = attach_split(frame, read_split(split_path))
        frame = frame[frame["split"] == split].reset_index(drop=True)
        recorded = (bundle.manifest.get("split") or {}).get("sha256")
        digest = sha256_file(split_path)
        source.update(split=split, split_file=str(split_path), split_sha256=digest,
                      split_matches_bundle=(recorded == digest) if recorded else None)
    if limit:
        frame = frame.iloc[:limit]
    if frame.empty:
        raise ValueError(f"{data_dir}: no labelled images to score" + (f" in split '{split}'" if use_split else ""))

    height, width = bundle.input_size
    images, keep, unreadable = [], [], []
    for position, (image_id, path) in enumerate(tqdm(zip(frame["id"], frame["path"]), total=len(frame),
                                                     desc="preprocessing", unit="img", disable=not progress)):
        try:
            images.append(preprocess(path, height, width))
            keep.append(position)
        except InvalidImageError:
            unreadable.append(int(image_id))
    frame = frame.iloc[keep].reset_index(drop=True)
    source.update(images=len(frame), unreadable_images=unreadable)
    labels = {head: [value if isinstance(value, str) else None for value in frame[head]] for head in bundle.heads}
    return EvalSet(ids=frame["id"].to_numpy(dtype=np.int64), labels=labels,
                   images=np.stack(images).astype(np.uint8), source=source)
