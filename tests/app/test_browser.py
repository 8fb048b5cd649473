"""The web app in a real browser: headless Chromium (Debian package) driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (``make browser-deps``).
A screenshot of the page after stylizing lands in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app as webapp
from tests.support.paths import REPO, SAMPLES
from tests.support.webapp import serve, tiny_shinkai_env

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    mp = tiny_shinkai_env(tmp_path_factory)
    demo = webapp.build_demo(max_side=256)
    yield serve(demo, max_queue=8)
    demo.close()
    mp.undo()


@pytest.fixture(scope="module")
def page():
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1100})
        yield context.new_page()
        context.close()
        browser.close()


def test_upload_stylize_and_see_the_result(app_url, page):
    src = SAMPLES / "teaser-0.jpg"
    page.goto(app_url, wait_until="networkidle")
    page.locator("#photo input[type=file]").set_input_files(str(src))
    page.locator("#photo img").first.wait_for(state="visible", timeout=30_000)  # the upload preview
    page.locator("#stylize").click()
    result = page.locator("#result img").first
    result.wait_for(state="visible", timeout=90_000)
    url = result.get_attribute("src")
    assert url
    data = page.request.get(url).body()
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
    photo = np.asarray(Image.open(src).convert("RGB"), dtype=int)
    assert out.shape == photo.shape
    assert np.abs(out - photo).mean() > 5  # stylized, not the upload echoed
    page.locator("#before-after img").first.wait_for(state="visible", timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-stylize.png"), full_page=True)
    assert (ARTIFACTS / "browser-stylize.png").stat().st_size > 10_000
