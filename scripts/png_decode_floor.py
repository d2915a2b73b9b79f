"""How far below the PNG decode itself can predict(path) go? (issue 24 speed targets)

For one test photo upscaled (bicubic) to 4000x3000 and saved as JPEG q90 / PNG / RGBA PNG (as the photo bench
does), times interleaved, median of N rounds: ``Classifier.predict(path)`` for each file, and for the PNGs the bare
libvips decode of every pixel (``pngload`` + one pass over the image, no reduction, no model). If the bare decode is
already more than the target times the JPEG's whole predict, no reduction rule can meet the target on this CPU.

    python scripts/png_decode_floor.py [BUNDLE] [--rounds N]
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv: list[str]) -> None:
    import pyvips

    from fashion.benchmarks.system import machine_summary
    from fashion.runtime.classifier import Classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="models/fashion-effnetb0")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    bundle, rounds = args.bundle, args.rounds
    pyvips.cache_set_max(0)
    photo = sorted(glob.glob("../shared/datasets/fashion-product-images/images/*.jpg"))[100]
    big = Image.open(photo).convert("RGB").resize((3000, 4000), Image.BICUBIC)
    rgba = np.asarray(big.convert("RGBA")).copy()
    rgba[..., 3] = np.where((rgba[..., :3] > 245).all(axis=-1), 0, 255)
    clf = Classifier.load(bundle, threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"JPEG": Path(tmp) / "p.jpg", "PNG": Path(tmp) / "p.png", "PNG-RGBA": Path(tmp) / "a.png"}
        big.save(files["JPEG"], quality=90)
        big.save(files["PNG"])
        Image.fromarray(rgba, "RGBA").save(files["PNG-RGBA"])
        tasks = {f"predict {k}": (lambda p=p: clf.predict(str(p))) for k, p in files.items()}
        for key in ("PNG", "PNG-RGBA"):
            data = files[key].read_bytes()
            tasks[f"bare decode {key}"] = lambda d=data: pyvips.Image.pngload_buffer(d, access="sequential").avg()
        times: dict[str, list[float]] = {k: [] for k in tasks}
        for task in tasks.values():
            task()  # warm
        for _ in range(rounds):
            for key, task in tasks.items():
                start = time.perf_counter()
                task()
                times[key].append(1000 * (time.perf_counter() - start))
    jpeg = statistics.median(times["predict JPEG"])
    machine = machine_summary()
    cpu = machine["cpu"]
    print(
        f"CPU: {cpu.get('model')}, {cpu.get('cores')} cores; flags: {', '.join(cpu.get('isa_flags', []))}; "
        f"load average at start {machine['load_average_start']}; {rounds} rounds, interleaved"
    )
    print("| task | p50 ms | x JPEG predict |")
    print("|---|---|---|")
    for key, values in times.items():
        print(f"| {key} | {statistics.median(values):.1f} | {statistics.median(values) / jpeg:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
