"""Bounded load test of the served demo: concurrent gradio_client clients on 127.0.0.1, zero errors."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from click.testing import CliRunner  # noqa: E402

from fashion.demo import loadtest  # noqa: E402
from fashion.demo.loadtest import run_load  # noqa: E402
from fashion.demo.server import running_demo  # noqa: E402
from fashion.runtime import Classifier  # noqa: E402

CLIENTS, REQUESTS_PER_CLIENT = 8, 25


@pytest.fixture(scope="module")
def demo_url(tiny_bundle):
    with Classifier.load(tiny_bundle) as classifier, running_demo(classifier) as url:
        yield url


@pytest.mark.timeout(300)
def test_concurrent_clients_get_every_prediction(demo_url, sample_dir, record_property):
    images = sorted((sample_dir / "images").glob("*.jpg"))[:20]
    report = run_load(demo_url, images, clients=CLIENTS, requests_per_client=REQUESTS_PER_CLIENT)
    print(f"\nload test (tiny bundle): {report.summary()}")
    record_property("load_test", report.summary())
    assert report.errors == []
    assert len(report.latencies_ms) == CLIENTS * REQUESTS_PER_CLIENT
    assert report.percentile(50) <= report.percentile(99)


def test_the_load_test_command_works_from_any_folder(demo_url, sample_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/sample/images here: the default must not be relative
    result = CliRunner().invoke(loadtest.main, ["--url", demo_url, "--clients", "1", "--requests", "2"])
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 errors" in result.output
    result = CliRunner().invoke(loadtest.main, ["-h"])
    assert result.exit_code == 0 and "--images" in result.output
