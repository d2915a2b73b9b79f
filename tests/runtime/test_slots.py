"""Core slots: decodes and model calls never hold more cores than there are, granted in request order; and
``predict_batch`` decodes ahead within them (the real classifier, its calls observed, not replaced)."""

from __future__ import annotations

import threading
import time

import pytest

from fashion.runtime import Classifier
from fashion.runtime.host import usable_cores
from fashion.runtime.slots import CoreSlots


def test_slots_never_exceed_the_total():
    slots, busy, peak, lock = CoreSlots(3), [0], [0], threading.Lock()

    def job(count: int) -> None:
        with slots.hold(count):
            with lock:
                busy[0] += count
                peak[0] = max(peak[0], busy[0])
            time.sleep(0.002)
            with lock:
                busy[0] -= count

    threads = [threading.Thread(target=job, args=(1 + i % 3,)) for i in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 3 and slots.free == 3
    with slots.hold(10):  # more than the total: all of them
        assert slots.free == 0


def test_a_large_request_is_not_overtaken_by_later_small_ones():
    slots, order = CoreSlots(2), []
    first = slots.hold(1)
    first.__enter__()  # one slot busy: a request for two must wait

    def take(name: str, count: int) -> None:
        with slots.hold(count):
            order.append(name)

    model = threading.Thread(target=take, args=("model", 2))
    model.start()
    time.sleep(0.05)
    decodes = [threading.Thread(target=take, args=(f"decode{i}", 1)) for i in range(3)]
    for thread in decodes:
        thread.start()
    time.sleep(0.05)
    assert order == []  # one slot is free, but the model asked first: the decodes queue behind it
    first.__exit__(None, None, None)
    for thread in [model, *decodes]:
        thread.join()
    assert order[0] == "model" and sorted(order[1:]) == ["decode0", "decode1", "decode2"]


def test_an_interrupted_wait_leaves_the_queue():
    slots = CoreSlots(1)
    held = slots.hold(1)
    held.__enter__()
    errors = []

    def interrupted() -> None:
        try:
            with slots.hold(1):
                pass
        except RuntimeError as exc:
            errors.append(exc)

    # interrupt a waiter by raising from inside Condition.wait
    original = slots._cond.wait

    def wait(timeout=None):
        raise RuntimeError("interrupted")

    slots._cond.wait = wait  # type: ignore[method-assign]
    waiter = threading.Thread(target=interrupted)
    waiter.start()
    waiter.join()
    slots._cond.wait = original  # type: ignore[method-assign]
    held.__exit__(None, None, None)
    assert errors and slots.free == 1
    with slots.hold(1):  # nothing stuck at the head of the queue
        pass
    with pytest.raises(ValueError, match="at least 1"):
        CoreSlots(0)


def test_predict_batch_decodes_ahead_within_the_cores(tiny_bundle, sample_dir):
    """Observed on the real classifier: decodes and model calls together never hold more than the usable cores,
    and the next batch starts decoding before the current batch's predictions are written."""
    paths = sorted((sample_dir / "images").glob("*.jpg"))[:12]
    cores = usable_cores()
    with Classifier.load(tiny_bundle) as clf:
        expected = [item.prediction.to_dict()["heads"] for item in clf.predict_batch(paths, decode_threads=1)]
        lock, state = threading.Lock(), {"decoding": 0, "model": 0, "peak": 0, "ahead": 0, "writing": False}
        real_preprocess, real_outputs, real_decode = clf.preprocess, clf._outputs, clf._decode

        def busy() -> int:
            return state["decoding"] + state["model"]

        def preprocess(source):
            with lock:
                state["decoding"] += 1
                state["peak"] = max(state["peak"], busy())
                state["ahead"] += state["writing"]
            try:
                time.sleep(0.003)
                return real_preprocess(source)
            finally:
                with lock:
                    state["decoding"] -= 1

        def outputs(batch, tta):
            with lock:
                state["model"] += clf.threads or cores
                state["peak"] = max(state["peak"], busy())
            try:
                return real_outputs(batch, tta)
            finally:
                with lock:
                    state["model"] -= clf.threads or cores

        def decode(*args):
            with lock:
                state["writing"] = True
            time.sleep(0.002)  # writing a prediction takes a while: the next batch decodes meanwhile
            try:
                return real_decode(*args)
            finally:
                with lock:
                    state["writing"] = False

        clf.preprocess, clf._outputs, clf._decode = preprocess, outputs, decode  # type: ignore[method-assign]
        items = clf.predict_batch(paths, batch_size=4, decode_threads=None)
    assert [item.prediction.to_dict()["heads"] for item in items] == expected
    threads, _ = clf.decode_plan()
    assert state["peak"] <= max(cores, threads)
    if threads > 1:  # a pool: the next batch decodes while this one's predictions are written
        assert state["ahead"] > 0
