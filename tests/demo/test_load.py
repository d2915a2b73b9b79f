"""Bounded load test of the served demo: concurrent gradio_client clients on 127.0.0.1, zero errors."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from fashion.demo.loadtest import run_load  # noqa: E402
from fashion.demo.server import running_demo  # noqa: E402
from fashion.runtime import Classifier  # noqa: E402

CLIENTS, REQUESTS_PER_CLIENT = 8, 25


@pytest.mark.timeout(300)
def test_concurrent_clients_get_every_prediction(tiny_bundle, sample_dir, record_property):
    images = sorted((sample_dir / "images").glob("*.jpg"))[:20]
    with Classifier.load(tiny_bundle) as classifier, running_demo(classifier) as url:
        report = run_load(url, images, clients=CLIENTS, requests_per_client=REQUESTS_PER_CLIENT)
    print(f"\nload test (tiny bundle): {report.summary()}")
    record_property("load_test", report.summary())
    assert report.errors == []
    assert len(report.latencies_ms) == CLIENTS * REQUESTS_PER_CLIENT
    assert report.percentile(50) <= report.percentile(99)
