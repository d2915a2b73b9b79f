"""Real-size photos: does a reduced decode change answers, and how fast is ``predict`` end to end?

The dataset's photos are 60x80 thumbnails; shop photos are 1-12 megapixels. Everything here runs on real-size
versions of real test photos, so content and labels stay those of the test split. One job per module:

* ``inputs``: the test photos of a split and their upscaled copies (JPEG q90 / PNG / RGBA PNG / WebP q90);
* ``compare``: the accuracy gate both checks share (``MAX_DROP_PP``), pixel differences, McNemar flips;
* ``fast_check``: ``check``, the Pillow fast path (JPEG draft / ``Image.reduce``) vs the exact path;
* ``gate``: ``vips-check``, the libvips accuracy gate per format and size;
* ``modes``: the decode modes the bench compares, on one loaded model;
* ``latency``: ``predict(path)`` p50/p90 per (size, format) and mode (``fashion.runtime.timing``);
* ``batch``: ``predict_batch`` images/s and cores busy per folder, and scaling with pinned cores;
* ``bench``: ``fashion-bench photos``, latency and batch in one run, and the issue's targets;
* ``render``: the Markdown reports;
* ``cli``: ``python -m fashion.benchmarks.photos check|vips-check`` and the body of ``fashion-bench photos|cores``.
"""
