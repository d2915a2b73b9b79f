"""Classifier: load a bundle, pick an artifact and a backend, predict six attributes of a photo.

    with Classifier.load("models/fashion-effnetb0") as clf:
        pred = clf.predict("shirt.jpg", top_k=3)
        print(pred.heads["articleType"].label, pred.heads["articleType"].confidence)

One loaded classifier may be shared by several threads: ONNX Runtime sessions are safe to run
concurrently, and backends that are not (TensorRT) are serialised behind a lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import vips_decode
from .backends.base import BACKEND_FOR_FORMAT, FEATURE_MAP, Backend, get_backend
from .bundle import Bundle, load_manifest, verify_files
from .errors import BundleError, FashionError
from .host import cpu_facts, read_choices, split_threads, usable_cores, write_choice
from .manifest import ArtifactEntry
from .preprocess import ImageSource, _describe
from .results import BatchItem, Decoder, Prediction
from .selection import (  # noqa: F401 - PRECISIONS ... choose_artifact are re-exported (old import path)
    FASTEST_CALLS,
    FASTEST_WARMUP,
    INT8_MIN_GAIN,
    PRECISION_CHOICES,
    PRECISIONS,
    ArtifactChoice,
    _candidates,
    _format_for,
    _missing,
    _timings_text,
    choice_cache_key,
    choose_artifact,
    recorded_pair,
    select_artifact,
    timing_sample,
)
from .slots import CoreSlots
from .timing import median_ms
from .tta import mirror_averaged


class Classifier:
    """Predicts every head of the bundle for one image or a batch. Build it with :meth:`load`."""

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        artifact: str,
        threads: int | None = None,
        choice: ArtifactChoice | None = None,
    ):
        self.bundle = bundle
        self.backend: Backend | None = backend
        self.artifact = artifact
        self.threads = threads
        self.choice = choice or ArtifactChoice(artifact, "given")
        self.heads = bundle.heads
        self.input_size = bundle.input_size
        self.preprocessor = bundle.preprocessor()
        self.decoder = Decoder(bundle.heads, bundle.labels, bundle.hierarchy, source=str(bundle.root))
        self.hierarchy = self.decoder.hierarchy
        self._lock = threading.Lock()
        self._head_weights: dict[str, np.ndarray] | None = None

    @classmethod
    def load(
        cls,
        bundle_dir: str | os.PathLike,
        backend: str = "auto",
        precision: str = "auto",
        providers: list[str] | None = None,
        threads: int | None = None,
        allow_fallback: bool = False,
        timing_image: ImageSource | None = None,
        fast_decode: bool | None = None,
        **backend_options: Any,
    ) -> Classifier:
        """Validate the bundle, choose and verify the artifact, open it and check its outputs.

        ``threads``: the model's intra-op threads (default: the usable cores, cgroup quota included).
        ``precision``: ``auto`` (host ISA / recorded timings), ``fastest`` (time the candidates here once,
        cache the winner under $XDG_CACHE_HOME/fashion-edge), or ``fp32`` / ``fp16`` / ``int8``.
        ``timing_image``: the photo ``fastest`` times with (default: a synthetic product photo).
        ``fast_decode``: False decodes large photos at full size (the exact path); default on.
        ``spinning`` / ``spin_between_calls``: ONNX Runtime's thread spin (see the onnxruntime backend).
        Default: spin inside each call; when the model has every usable core, stop spinning as soon as
        the call returns, so decoding and other work get the cores between calls.
        """
        bundle = load_manifest(bundle_dir, verify_hashes=False)
        threads = int(threads) if threads else usable_cores()
        options = {"providers": providers, "threads": threads, "allow_fallback": allow_fallback, **backend_options}
        if "spinning" not in backend_options and "spin_between_calls" not in backend_options:
            # ORT threads busy-wait inside a call (fast: no wake-ups between operators) and, by default, for a
            # while after it. When decoding must share the model's cores (the model has every usable core), that
            # after-call spin steals the decoders' time, so it stops when the call returns. Spare cores: ORT's
            # default. (Turning spinning off altogether made batch-1 calls about 1.5x slower.)
            options["spin_between_calls"] = None if threads < usable_cores() else False
        if precision == "fastest":
            clf = cls._load_fastest(bundle, backend, options, timing_image)
        else:
            choice = select_artifact(bundle, backend, precision, threads=threads)
            clf = cls(bundle, cls._open(bundle, choice.artifact, options), choice.artifact, threads, choice)
        if fast_decode is not None:
            clf.preprocessor = replace(clf.preprocessor, fast=bool(fast_decode))
        return clf

    @staticmethod
    def _open(bundle: Bundle, key: str, options: dict[str, Any]) -> Backend:
        verify_files(bundle, [key])
        entry = bundle.artifacts[key]
        path = bundle.artifact_path(key)
        engine = get_backend(BACKEND_FOR_FORMAT[entry.format]).open(path, entry, **options)
        try:
            _check_outputs(bundle, engine, path)
        except BaseException:
            engine.close()
            raise
        return engine

    @classmethod
    def _load_fastest(
        cls, bundle: Bundle, backend: str, options: dict[str, Any], timing_image: ImageSource | None
    ) -> Classifier:
        """Time every candidate on this host (batch 1), keep the winner open, cache the verdict."""
        fmt = _format_for(backend)
        candidates = _candidates(bundle, fmt)
        if not candidates:
            raise _missing(bundle, fmt, "fastest")
        threads = int(options["threads"])
        cpu = cpu_facts()
        key = choice_cache_key(bundle, candidates, cpu, threads)
        cached = read_choices().get(key)
        if len(candidates) == 1 or (isinstance(cached, dict) and cached.get("artifact") in candidates):
            if len(candidates) == 1:
                winner, reason = candidates[0], f"the bundle's only {fmt} artifact"
            else:
                assert isinstance(cached, dict)
                winner = str(cached["artifact"])
                reason = f"fastest on this host, measured {cached.get('measured_at')}: " + _timings_text(
                    cached.get("p50_ms") or {}
                )
            engine = cls._open(bundle, winner, options)
            return cls(bundle, engine, winner, threads, ArtifactChoice(winner, reason))
        preprocessor = bundle.preprocessor()
        sample = preprocessor(timing_image) if timing_image is not None else timing_sample(preprocessor)
        batch = preprocessor.to_batch([sample])
        timings: dict[str, float] = {}
        best: tuple[float, str, Backend] | None = None
        for candidate in candidates:
            engine = cls._open(bundle, candidate, options)
            p50 = median_ms({candidate: engine.infer}, [batch], rounds=FASTEST_CALLS, warmup=FASTEST_WARMUP)
            timings[candidate] = round(p50[candidate], 3)
            if best is None or timings[candidate] < best[0]:
                if best is not None:
                    best[2].close()
                best = (timings[candidate], candidate, engine)
            else:
                engine.close()
        assert best is not None
        measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_choice(
            key,
            {
                "artifact": best[1],
                "p50_ms": timings,
                "cpu": cpu.model,
                "flags": cpu.reported_flags,
                "threads": threads,
                "calls": FASTEST_CALLS,
                "measured_at": measured_at,
            },
        )
        reason = f"fastest on this host, measured now: {_timings_text(timings)}"
        return cls(bundle, best[2], best[1], threads, ArtifactChoice(best[1], reason))

    # -- inference ---------------------------------------------------------------------------

    def infer(self, batch: np.ndarray, feature_map: bool = False) -> dict[str, np.ndarray]:
        """Raw model outputs {head: (N, classes) probabilities} for a preprocessed float32 batch (thread-safe)."""
        if self.backend is None:
            raise FashionError("this Classifier is closed")
        if self.backend.thread_safe:
            return self.backend.infer(batch, feature_map=feature_map)
        with self._lock:
            return self.backend.infer(batch, feature_map=feature_map)

    def _outputs(self, batch: np.ndarray, tta: bool) -> dict[str, np.ndarray]:
        """{head: probabilities} for a batch; with ``tta`` also for its horizontal mirror, averaged per head.

        The batch and its mirror go through the model as one 2N batch (one call, so one lock hold and one
        dispatch); product photos are left-right symmetric in meaning, so the mirror is a second opinion.
        """
        if not tta:
            return self.infer(batch)
        return mirror_averaged(self.infer, batch, self.heads, self.preprocessor.layout)

    def _decode(
        self, outputs: dict[str, np.ndarray], row: int, top_k: int, consistent: bool, latency_ms: float
    ) -> Prediction:
        return self.decoder.decode(outputs, row, top_k, consistent, latency_ms)

    def preprocess(self, image: ImageSource) -> np.ndarray:
        """The exact uint8 HxWx3 tensor the model sees for ``image`` (raises InvalidImageError)."""
        return self.preprocessor(image)

    def predict(self, image: ImageSource, top_k: int = 3, consistent: bool = False, tta: bool = False) -> Prediction:
        """Predict every head for one image (path, bytes, PIL image or HxWx3 uint8 array).

        ``tta``: average each head's probabilities with those of the mirrored photo (about twice the
        model time, included in ``latency_ms``).
        """
        start = time.perf_counter()
        outputs = self._outputs(self.preprocessor.to_batch([self.preprocess(image)]), tta)
        return self._decode(outputs, 0, top_k, consistent, (time.perf_counter() - start) * 1000)

    def decode_plan(self, decode_threads: int | None = None) -> tuple[int, bool]:
        """(decode threads, overlap with the model) for ``predict_batch``; never more threads than usable cores."""
        model_threads = self.threads or usable_cores()
        if decode_threads is None:
            return split_threads(model_threads)
        if decode_threads < 1:
            raise ValueError(f"decode_threads must be at least 1, got {decode_threads}")
        return decode_threads, decode_threads + model_threads <= usable_cores()

    def predict_batch(
        self,
        images: Iterable[ImageSource],
        batch_size: int = 32,
        top_k: int = 3,
        consistent: bool = False,
        decode_threads: int | None = None,
        tta: bool = False,
    ) -> list[BatchItem]:
        """Predict many images; an image that cannot be read is reported in its item, the rest still run.

        ``tta`` as in :meth:`predict`: each batch runs with its mirror as one call of twice the size.

        Images are decoded by a thread pool (Pillow and libvips release the GIL). Decodes and model calls
        share the usable cores as slots (:class:`~fashion.runtime.slots.CoreSlots`): a decode holds one, a
        model call as many as the model has threads, writing the predictions one. The next batch is queued
        for decoding as soon as the model holds its slots: with a core free beside the model's threads it
        decodes during the call; when the model has every core it starts the moment the call returns, on
        every core but the one writing the current batch's predictions. Decode and model threads never
        outnumber the cores. Items come back in input order whatever the pool does.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        images = list(images)
        items: list[BatchItem | None] = [None] * len(images)
        starts = list(range(0, len(images), batch_size))
        threads, _ = self.decode_plan(decode_threads)
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fashion-decode") if threads > 1 else None
        # an explicit decode_threads above the cores is the caller's choice (e.g. slow storage): it gets its slots
        slots = CoreSlots(max(usable_cores(), threads)) if pool is not None else None
        try:
            submit = self._decoder(pool, slots)
            pending = submit(images[starts[0] : starts[0] + batch_size]) if starts else []
            for number, first in enumerate(starts):
                clock = time.perf_counter()
                decoded = [job() for job in pending]
                following = starts[number + 1] if number + 1 < len(starts) else len(images)
                # the next batch is queued once the model holds its cores: decoded with the spare cores during the
                # call, and on every core the moment it returns
                after = images[following : following + batch_size]
                pending = self._run_batch(
                    images, first, decoded, items, top_k, consistent, clock, tta, slots, submit, after
                )
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return items  # type: ignore[return-value]

    def _decoder(
        self, pool: ThreadPoolExecutor | None, slots: CoreSlots | None = None
    ) -> Callable[[list[ImageSource]], list[Callable[[], Any]]]:
        """A function that starts decoding a list of images and returns one result getter per image."""

        def safe(source: ImageSource) -> np.ndarray | Exception:
            try:  # one decode, one thread (libvips included), one slot
                with slots.hold(1) if slots else contextlib.nullcontext(), vips_decode.one_thread():
                    return self.preprocess(source)
            except Exception as exc:  # one unreadable photo must not sink the batch
                return exc

        def submit(sources: list[ImageSource]) -> list[Callable[[], Any]]:
            if pool is None:  # decode lazily, in the caller's thread, when the batch is collected
                return [functools.partial(safe, source) for source in sources]
            futures: list[Future] = [pool.submit(safe, source) for source in sources]
            return [future.result for future in futures]

        return submit

    def _run_batch(
        self,
        images: list[ImageSource],
        first: int,
        decoded: list[np.ndarray | Exception],
        items: list[BatchItem | None],
        top_k: int,
        consistent: bool,
        clock: float,
        tta: bool = False,
        slots: CoreSlots | None = None,
        submit: Callable[[list[ImageSource]], list[Callable[[], Any]]] | None = None,
        following: list[ImageSource] | None = None,
    ) -> list[Callable[[], Any]]:
        """Run one decoded batch and write its items; returns the getters of ``following``, submitted for decoding
        as soon as the model holds its slots (so it never waits for decodes of the next batch)."""
        tensors, rows = [], []
        for offset, result in enumerate(decoded):
            position = first + offset
            if isinstance(result, Exception):
                items[position] = BatchItem(
                    source=_describe(images[position]), error=str(result) or type(result).__name__
                )
            else:
                tensors.append(result)
                rows.append(position)
        queue = functools.partial(submit, following) if submit is not None and following else list
        if not tensors:
            return queue()
        with slots.hold(self.threads or usable_cores()) if slots else contextlib.nullcontext():
            pending = queue()
            outputs = self._outputs(self.preprocessor.to_batch(tensors), tta)
        per_image_ms = (time.perf_counter() - clock) * 1000 / len(rows)
        with slots.hold(1) if slots else contextlib.nullcontext():  # Python on one core, decoders on the rest
            for row, position in enumerate(rows):
                prediction = self._decode(outputs, row, top_k, consistent, per_image_ms)
                items[position] = BatchItem(source=_describe(images[position]), prediction=prediction)
        return pending

    # -- class-activation maps -----------------------------------------------------------------

    def _weights(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._head_weights is None:
                path = self.bundle.root / "head_weights.npz"
                if not path.is_file():
                    raise BundleError(f"{path}: missing (needed for cam())")
                with np.load(path, allow_pickle=False) as data:
                    self._head_weights = {name: data[name] for name in data.files}
            return self._head_weights

    def cam(self, image: ImageSource, head: str = "articleType", class_index: int | None = None) -> np.ndarray:
        """Class-activation map of ``head`` (its predicted class unless ``class_index``): float32 HxW in [0, 1]."""
        if head not in self.heads:
            raise ValueError(f"unknown head {head!r} (heads: {', '.join(self.heads)})")
        outputs = self.infer(self.preprocessor.to_batch([self.preprocess(image)]), feature_map=True)
        kernel = self._weights().get(f"{head}/kernel")
        features = outputs[FEATURE_MAP][0]  # h x w x C
        if kernel is None or kernel.shape != (features.shape[-1], len(self.bundle.labels[head])):
            raise BundleError(
                f"{self.bundle.root / 'head_weights.npz'}: '{head}/kernel' is missing or has shape "
                f"{None if kernel is None else kernel.shape}, expected "
                f"{(features.shape[-1], len(self.bundle.labels[head]))}"
            )
        index = int(np.argmax(outputs[head][0])) if class_index is None else int(class_index)
        heat = np.maximum(features @ kernel[:, index], 0).astype(np.float32)
        height, width = self.input_size
        heat = np.asarray(Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
        peak = float(heat.max())
        return np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(heat)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def entry(self) -> ArtifactEntry:
        """The manifest entry of the artifact this classifier runs (its format, precision, file, timings)."""
        return self.bundle.manifest.artifact(self.artifact)

    @property
    def info(self) -> dict[str, Any]:
        """What runs where, as JSON-ready data (``fashion-predict`` prints it, fashion-serve serves it); code that
        needs a manifest fact reads ``entry`` instead."""
        entry = self.entry
        decode_threads, overlap = self.decode_plan()
        return {
            "backend": self.backend.name if self.backend else None,
            "providers": list(self.backend.providers) if self.backend else [],
            "precision": entry.precision,
            "artifact": self.artifact,
            "artifact_choice": self.choice.to_dict(),
            "file": entry.file,
            "input_size": list(self.input_size),
            "threads": self.threads,
            "session_options": dict(getattr(self.backend, "session_options", {}) or {}),
            "decode": {
                "fast_path": self.preprocessor.fast,
                "gap": self.preprocessor.gap,
                "threads": decode_threads,
                "overlap_with_model": overlap,
            },
            "host": {"cpu": cpu_facts().model, "usable_cores": usable_cores()},
        }

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_outputs(bundle: Bundle, backend: Backend, path: Path) -> None:
    """The model must produce every head, each with as many classes as labels.json lists."""
    sizes = backend.output_sizes()
    for head in bundle.heads:
        if head not in sizes:
            raise BundleError(f"{path}: model has no output for head '{head}' (outputs: {sorted(sizes)})")
        expected = len(bundle.labels[head])
        if sizes[head] is not None and sizes[head] != expected:
            raise BundleError(
                f"{path}: head '{head}' outputs {sizes[head]} classes but labels.json "
                f"lists {expected}; the model and labels come from different trainings"
            )
