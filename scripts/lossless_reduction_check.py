"""How close libvips' reduced decode of PNG / RGBA PNG comes to the exact path, per box-reduction rule (issue 24).

    python scripts/lossless_reduction_check.py --data ../shared/datasets/fashion-product-images [--photos 300]
        [--gaps 3,4,6,8] [--split val] [--timing-rounds 9]

A candidate is ``Preprocessor.lossless_gap`` = g: libvips box-reduces a PNG by ``floor(reduction / g)``, leaving at
least g x the model input per axis for the final bilinear resize (g = 3, the JPEG/WebP gap, was the rule
before). Photos of a seeded sample of the split (validation by default: never tune on test) are upscaled bicubic
to 1080x1440 and 2400x3200 and written as PNG and as RGBA PNG (white > 245 transparent), as the accuracy gate
(``python -m fashion.benchmarks.photos vips-check``) writes them; each goes through the exact path (Pillow, full
size, bilinear) and through libvips at every g. Reported per cell: pixel max / mean abs difference after the final
resize, and the top-1 agreement of the shipped model's six heads between the two paths.

Timing: a 4000x3000 photo as JPEG q90, PNG and RGBA PNG (compress level 1, as the photo bench writes them): the
preprocessing alone (decode + final resize, no model; CPU time, libvips' pool included) and ``predict(path)`` per
candidate, and predict(path) as a multiple of the same photo as JPEG; and the 2400x3200 PNGs preprocessed in one
thread, as predict_batch's decode threads do. All take turns call by call in a shuffled order; medians. The cores
are shared: compare within one run only.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fashion.data.paths import find_layout  # noqa: E402
from fashion.runtime import Classifier, vips_decode  # noqa: E402
from fashion.runtime.preprocess import PREPROCESSING_SPEC, Preprocessor, build_preprocessor  # noqa: E402

SIZES = ((1080, 1440), (2400, 3200))
FORMATS = ("PNG", "PNG-RGBA")
TIMING_SIZE = (4000, 3000)
BATCH_SIZE = (2400, 3200)  # the photo bench's predict_batch folders


def written(big: Image.Image, fmt: str) -> Image.Image:
    """The pixels the gate writes: the photo, or a catalogue cut-out (white > 245 in all three bands transparent)."""
    if fmt == "PNG":
        return big
    near_white = [0] * 246 + [255] * 10
    red, green, blue = (band.point(near_white) for band in big.convert("RGB").split())
    cut = big.convert("RGBA")
    cut.putalpha(ImageChops.invert(ImageChops.darker(ImageChops.darker(red, green), blue)))
    return cut


def png(image: Image.Image, level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=level)
    return buffer.getvalue()


def candidates(gaps: list[float]) -> dict[str, Preprocessor]:
    vips = build_preprocessor(PREPROCESSING_SPEC, 1, 1, decoder="libvips")  # the model's size is set later
    if "lossless_gap" not in {f.name for f in fields(Preprocessor)}:  # a checkout before the rule existed
        return {"before": vips}
    return {f"g{g:g}": replace(vips, lossless_gap=g) for g in gaps}


def sample(data: Path, split_file: Path, split: str, count: int, seed: int) -> list[Path]:
    with open(split_file, newline="", encoding="utf-8") as handle:
        ids = sorted(int(row["id"]) for row in csv.DictReader(handle) if row["split"] == split)
    images = find_layout(data)[1]
    paths = [images / f"{i}.jpg" for i in ids if (images / f"{i}.jpg").is_file()]
    return sorted(random.Random(seed).sample(paths, min(count, len(paths))))


def fidelity(clf: Classifier, photos: list[Path], pres: dict[str, Preprocessor]) -> list[dict]:
    h, w = clf.input_size
    exact = build_preprocessor(PREPROCESSING_SPEC, h, w, fast=False, decoder="pillow")
    pres = {name: replace(pre, height=h, width=w) for name, pre in pres.items()}
    cells = {(size, fmt): {"max": {}, "sum": {}, "top1": {}} for size in SIZES for fmt in FORMATS}
    pending: dict[tuple, list[np.ndarray]] = {}

    def flush() -> None:
        for (size, fmt, name), arrays in pending.items():
            outputs = clf.infer(clf.preprocessor.to_batch(arrays))
            top1 = np.stack([outputs[head].argmax(axis=1) for head in clf.heads], axis=1)
            cells[(size, fmt)]["top1"].setdefault(name, []).append(top1)
        pending.clear()

    before = vips_decode.counts()
    for number, path in enumerate(photos, 1):
        base = exact.load(path)
        for size in SIZES:
            big = base.resize(size, Image.Resampling.BICUBIC)
            for fmt in FORMATS:
                image = written(big, fmt)
                data = png(image, 0)  # stored: decodes to the same pixels, written fast (as the gate does)
                reference = exact(image)  # the gate's exact path reads the pixels written
                pending.setdefault((size, fmt, "exact"), []).append(reference)
                cell = cells[(size, fmt)]
                for name, pre in pres.items():
                    got = pre(data)
                    diff = np.abs(got.astype(np.int16) - reference)
                    cell["max"][name] = max(cell["max"].get(name, 0), int(diff.max()))
                    cell["sum"][name] = cell["sum"].get(name, 0.0) + float(diff.mean())
                    pending.setdefault((size, fmt, name), []).append(got)
        if number % 50 == 0 or number == len(photos):
            flush()
            print(f"  {number}/{len(photos)} photos", file=sys.stderr, flush=True)
    after = vips_decode.counts()
    rows = []
    for (size, fmt), cell in cells.items():
        exact_top1 = np.concatenate(cell["top1"]["exact"])
        for name in pres:
            top1 = np.concatenate(cell["top1"][name])
            agree = (top1 == exact_top1).mean(axis=0)
            rows.append(
                {
                    "cell": f"{size[0]}x{size[1]}/{fmt}",
                    "rule": name,
                    "max": cell["max"][name],
                    "mean": cell["sum"][name] / len(photos),
                    "min_agree": float(agree.min()),
                    "changed": int((top1 != exact_top1).sum()),
                }
            )
    rows.append({"decoded": after["decoded"] - before["decoded"], "refused": after["refused"] - before["refused"]})
    return rows


def timing(clf: Classifier, photos: list[Path], pres: dict[str, Preprocessor], rounds: int, folder: Path) -> list[dict]:
    """Per candidate: 4000x3000 preprocess CPU time and predict(path) (libvips' pool, as predict runs it), and
    2400x3200 preprocess CPU time in one thread (as predict_batch's decode threads run it); order shuffled per
    round and photo (seeded), medians."""
    h, w = clf.input_size
    files: list[dict[tuple[str, str], Path]] = []
    for i, path in enumerate(photos):
        photo = Image.open(path).convert("RGB")
        files.append({})
        for size, label in ((TIMING_SIZE, "large"), (BATCH_SIZE, "batch")):
            big = photo.resize(size, Image.Resampling.BICUBIC)
            if label == "large":
                files[-1][("JPEG", label)] = folder / f"{i}.jpg"
                big.save(files[-1][("JPEG", label)], "JPEG", quality=90)
            for fmt in FORMATS:
                files[-1][(fmt, label)] = folder / f"{i}-{fmt}-{label}.png"
                files[-1][(fmt, label)].write_bytes(png(written(big, fmt), 1))
    calls = {("JPEG", "default"): build_preprocessor(PREPROCESSING_SPEC, h, w)}  # JPEG: the default (Pillow draft)
    for fmt in FORMATS:
        for name, pre in pres.items():
            calls[(fmt, name)] = replace(pre, height=h, width=w)
    took: dict[tuple, dict[str, list[float]]] = {key: {"cpu": [], "predict": [], "batch_cpu": []} for key in calls}
    shuffle = random.Random(0)
    for round_ in range(rounds + 1):  # round 0: warm-up
        for item in files:
            order = list(calls)
            shuffle.shuffle(order)
            for key in order:
                pre, large = calls[key], str(item[(key[0], "large")])
                start = time.process_time()
                pre(large)
                cpu = time.process_time() - start
                clf.preprocessor = pre
                start = time.perf_counter()
                clf.predict(large)
                predict = time.perf_counter() - start
                batch = None
                if key[0] != "JPEG":
                    with vips_decode.one_thread():
                        start = time.process_time()
                        pre(str(item[(key[0], "batch")]))
                        batch = time.process_time() - start
                if round_:
                    took[key]["cpu"].append(cpu * 1000)
                    took[key]["predict"].append(predict * 1000)
                    if batch is not None:
                        took[key]["batch_cpu"].append(batch * 1000)
    jpeg = float(np.median(took[("JPEG", "default")]["predict"]))
    return [
        {
            "format": fmt,
            "rule": name,
            **{k: float(np.median(v)) if v else float("nan") for k, v in took[(fmt, name)].items()},
            "x_jpeg": float(np.median(took[(fmt, name)]["predict"])) / jpeg,
        }
        for fmt, name in calls
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default=str(ROOT / "models/fashion-effnetb0"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", default=str(ROOT / "data/splits/fashion-product-images.csv"))
    parser.add_argument("--split", default="val", choices=("train", "val"))  # never the test split
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--gaps", default="3,4,6,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-photos", type=int, default=3)
    parser.add_argument("--timing-rounds", type=int, default=9)
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args(argv)
    if not vips_decode.available():
        parser.error(f"libvips is needed: {vips_decode.unavailable_reason()}")
    pres = candidates([float(g) for g in args.gaps.split(",")])
    photos = sample(Path(args.data), Path(args.split_file), args.split, args.photos, args.seed)
    with Classifier.load(args.bundle) as clf:
        print(f"{vips_decode.version()}, artifact {clf.artifact}, {args.split} split, seed {args.seed}")
        if not args.skip_fidelity:
            rows = fidelity(clf, photos, pres)
            counts = rows.pop()
            print(f"\n{len(photos)} photos; libvips decoded {counts['decoded']}, refused {counts['refused']}\n")
            print("| cell | rule | pixel max / mean abs diff | min top-1 agreement (6 heads) | answers changed |")
            print("|---|---|---|---|---|")
            for row in rows:
                print(
                    f"| {row['cell']} | {row['rule']} | {row['max']} / {row['mean']:.4f} | {row['min_agree']:.4f} "
                    f"| {row['changed']} |"
                )
        if not args.skip_timing:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="lossless-check-") as tmp:
                rows = timing(clf, photos[: args.timing_photos], pres, args.timing_rounds, Path(tmp))
            print(
                f"\n{args.timing_photos} photos x {args.timing_rounds} rounds; {TIMING_SIZE[0]}x{TIMING_SIZE[1]}: "
                f"preprocess CPU ms and predict(path) ms (x the same photo as JPEG); {BATCH_SIZE[0]}x{BATCH_SIZE[1]}: "
                "preprocess CPU ms in one thread (predict_batch's decode threads); medians\n"
            )
            print("| format | rule | 4000x3000 preprocess CPU | predict(path) | x JPEG | 2400x3200 one-thread CPU |")
            print("|---|---|---|---|---|---|")
            for row in rows:
                print(
                    f"| {row['format']} | {row['rule']} | {row['cpu']:.1f} | {row['predict']:.1f} | {row['x_jpeg']:.2f} "
                    f"| {row['batch_cpu']:.1f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
