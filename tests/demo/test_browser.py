"""The demo page in a real browser: Debian's headless Chromium driven by Playwright, no internet."""

from __future__ import annotations

import csv

import pytest

from fashion import HEADS

pytest.importorskip("gradio")
pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")

from fashion.demo import browser, views  # noqa: E402
from fashion.runtime import Classifier  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not browser.CHROMIUM.is_file(),
        reason=f"{browser.CHROMIUM} missing: install Debian's chromium (`make browser`, needs root)",
    ),
]


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    with Classifier.load(tiny_bundle) as clf:
        yield clf


@pytest.fixture(scope="module")
def demo_url(classifier):
    from fashion.demo.server import running_demo

    with running_demo(classifier) as url:
        yield url


@pytest.fixture()
def page(demo_url):
    with browser.chromium_page() as (page, blocked):
        yield page
        assert blocked == [], f"the page tried to reach the internet: {blocked}"


def _shown_labels(page) -> dict[str, str]:
    return {head: page.inner_text(f"#head-{head}") for head in HEADS}


def test_uploaded_photo_shows_six_predictions_and_a_heat_map(page, demo_url, classifier, sample_dir, tmp_path):
    image = views.example_images(sample_dir, count=1)[0]
    status = browser.predict_photo(page, demo_url, image)
    browser.wait_for_heat_map(page)
    expected = classifier.predict(image, top_k=3)
    shown = _shown_labels(page)
    for head in HEADS:
        for label, _ in expected.heads[head].top_k:
            assert label in shown[head], f"{head}: {label!r} not on the page ({shown[head]!r})"
    assert "Prediction took" in status and "onnxruntime" in status and "fp32" in status
    assert page.locator("#heatmap img").evaluate("img => img.naturalWidth") > 0
    screenshot = tmp_path / "demo.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_clicking_an_example_predicts_it(page, demo_url, classifier, sample_dir):
    page.goto(demo_url)
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)
    expected_count = len(views.example_images(sample_dir))
    # the gallery renders after the file input: wait for all of it, then count (count() itself does not wait)
    page.wait_for_function(
        "(n) => document.querySelectorAll('button.gallery-item').length >= n", arg=expected_count, timeout=60_000
    )
    examples = page.locator("button.gallery-item")
    assert examples.count() == expected_count
    examples.first.click()
    page.wait_for_function("document.querySelector('#status')?.innerText.includes('Prediction took')", timeout=60_000)
    expected = classifier.predict(views.example_images(sample_dir)[0]).heads["articleType"].label
    assert expected in page.inner_text("#head-articleType")


def test_bad_upload_shows_an_error_in_the_page_and_the_next_photo_still_works(page, demo_url, sample_dir, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"these bytes are not a photo")
    status = browser.predict_photo(page, demo_url, bad)
    assert "Could not use this file" in status and "holiday.jpg" in status
    assert "not a recognised image format" in status
    good = views.example_images(sample_dir, count=2)[1]
    status = browser.predict_photo(page, demo_url, good)
    assert "Prediction took" in status


def test_batch_tab_fills_the_table_and_downloads_the_csv(page, demo_url, classifier, sample_dir, tmp_path):
    images = views.example_images(sample_dir, count=3)
    page.goto(demo_url)
    page.get_by_role("tab", name="Batch").click()
    page.wait_for_selector("#batch-files input[type=file]", state="attached", timeout=60_000)
    page.set_input_files("#batch-files input[type=file]", [str(p) for p in images])
    page.wait_for_function(
        "(n) => document.querySelectorAll('#batch-files .file-preview tr, #batch-files table tr').length >= n",
        arg=len(images),
        timeout=60_000,
    )
    page.click("#batch-run")
    last = images[-1].name
    page.wait_for_function(
        "(name) => document.querySelector('#batch-table')?.innerText.includes(name)", arg=last, timeout=60_000
    )
    table = page.inner_text("#batch-table")
    for image in images:
        assert image.name in table
        assert classifier.predict(image).heads["articleType"].label in table
    with page.expect_download(timeout=30_000) as download:
        page.click("#batch-csv a")
    saved = tmp_path / "predictions.csv"
    download.value.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == views.batch_columns(HEADS) and [r[0] for r in rows[1:]] == [p.name for p in images]


def test_screenshot_command_writes_a_png(tiny_bundle, sample_dir, tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "shot.png"
    image = views.example_images(sample_dir, count=1)[0]
    result = CliRunner().invoke(browser.main, ["--bundle", str(tiny_bundle), "--image", str(image), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "Prediction took" in result.output
