"""The web app in a real browser: headless Chromium (Debian package) driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (``make browser-deps``).
Every check reads what the page shows (the rendered DOM text of notes, labels and toasts), not
the Python strings. Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from PIL import Image

import app as webapp
from tests.support.browser import (
    ARTIFACTS,
    CHROMIUM,
    assert_no_server_details,
    choose_style,
    fake_camera_flags,
    launch_chromium,
    open_app,
    screenshot,
    toast_saying,
    toasts,
    write_y4m,
)
from tests.support.fixtures import tiny_translator, write_awkward_images, write_png_bomb
from tests.support.paths import DATA, SAMPLES
from tests.support.videos import moving_square, write_clip
from tests.support.webapp import AppProcess, serve, tiny_shinkai_env

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app in its own process (as users run it): nothing the other tests of this pytest worker
    leave in the process (threads, torch settings, handlers) can slow it down; its log is read."""
    mp = tiny_shinkai_env(tmp_path_factory)
    mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf")))  # hosoda: nothing cached
    args = ["--max-side", "256", "--video-max-side", "64", "--video-seconds", "2", "--max-queue", "8"]
    server = AppProcess(tmp_path_factory.mktemp("app"), args)
    yield server
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def app_url(app):
    return app.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with a fake camera (a still 96 x 64 picture) for the Live tab."""
    from playwright.sync_api import sync_playwright

    camera = tmp_path_factory.mktemp("camera") / "camera.y4m"
    write_y4m(camera, [np.asarray(Image.open(SAMPLES / "teaser-0.jpg").convert("RGB").resize((96, 64)))] * 2)
    with sync_playwright() as pw:
        chromium = launch_chromium(pw, fake_camera_flags(camera))
        yield chromium
        chromium.close()


def test_upload_stylize_and_see_the_result(app, page):
    """... with one download (the slider's is the result's full-size PNG, by its name) and the
    job's start and end in the server log."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    app_url = app.url
    src = SAMPLES / "teaser-0.jpg"
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    open_app(page, app_url)
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
    try:
        page.locator("#before-after img").first.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeoutError:
        slider = page.inner_html("#before-after")[:2000]
        toasts = page.locator(".toast-body").all_inner_texts()
        pytest.fail(f"the before/after slider stayed empty; HTML: {slider}; toasts: {toasts}; console: {console[-20:]}")
    assert page.locator("#result a[download]").first.get_attribute("download") == "teaser-0-shinkai.png"
    slider_link = page.locator("#before-after a[download]").first
    assert slider_link.get_attribute("download") == "teaser-0-shinkai.png"  # not image.webp
    png = page.request.get(slider_link.get_attribute("href")).body()
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == Image.open(src).size
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int), out)
    log = app.wait_for_log("teaser-0-shinkai.png")
    job = re.search(r"image job (\d+): teaser-0\.jpg, style shinkai, strength 1, cap 256 px", log)
    assert job, log[-2000:]
    assert re.search(rf"image job {job.group(1)}: done in \d+\.\d s: teaser-0-shinkai\.png", log), log[-2000:]
    screenshot(page, "browser-stylize.png")
    assert (ARTIFACTS / "browser-stylize.png").stat().st_size > 10_000


def test_every_message_reads_right_in_the_page(app, page, tmp_path):
    """What a user sees for a style without weights, files that are not usable photos (a text file
    named .jpg, a huge PNG, a truncated JPEG, a 1 x 1 PNG: each refused at upload, in a toast and in
    the note under the result, with Stylize off until a usable photo comes), a file that is not a
    video, and a clip without sound: plain sentences, no server paths or error numbers."""
    huge = tmp_path / "huge.png"
    write_png_bomb(huge, side=20000)  # a valid 20000 x 20000 PNG, 400 MP
    awkward = write_awkward_images(tmp_path / "awkward")
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("shopping list: rice, miso\n")
    silent = tmp_path / "silent walk.mp4"
    write_clip(silent, moving_square(12, 48, 32), rate=12)

    app_url = app.url
    open_app(page, app_url)
    assert page.inner_text("#style-note").startswith("Makoto Shinkai: ready")  # opens on a style that runs
    choose_style(page, "Mamoru Hosoda (not available)")
    note = (
        "Not available. The Mamoru Hosoda style cannot be used: no weights for it have been published yet, "
        "and this server has none of its own. Choose Makoto Shinkai instead."
    )
    # The exact text: while the change is on its way the note may also show "processing | 0.2s".
    page.wait_for_function(f"document.querySelector('#style-note').innerText === {note!r}")
    page.wait_for_function("document.querySelector('#stylize').disabled")  # and Stylize is off
    screenshot(page, "browser-hosoda.png")
    choose_style(page, "Makoto Shinkai")
    page.wait_for_function("!document.querySelector('#stylize').disabled")

    def upload(path, expected: str, usable: bool = False) -> None:
        page.locator("#photo input[type=file]").set_input_files(str(path))
        try:
            page.wait_for_function(f"document.querySelector('#image-note').innerText === {expected!r}", timeout=30_000)
        except Exception:
            pytest.fail(f"{path.name}: the note says {page.inner_text('#image-note')!r}; toasts: {toasts(page)}")
        assert page.locator("#stylize").is_disabled() != usable, path.name
        if not usable:
            assert toast_saying(page, path.name) == expected
            assert page.locator("#photo img").count() == 0  # no broken preview left behind

    upload(
        SAMPLES / "teaser-0.jpg",
        "460 x 259 px: the style works at 256 x 144 px (the resolution cap); the result is scaled back to "
        "460 x 259 px.",
        usable=True,
    )
    upload(
        awkward["text"], "text.jpg is not a photo this app can read. Upload a JPEG, PNG, WebP, BMP, GIF or TIFF image."
    )
    upload(
        huge,
        "huge.png is too large: 20000 x 20000 pixels (400 megapixels). The largest photo this app takes is "
        "50 megapixels; make it smaller and upload it again.",
    )
    upload(
        awkward["truncated"],
        "truncated.jpg is damaged or incomplete, so it cannot be read: the file may not have finished saving "
        "or uploading. Try another copy of the photo.",
    )
    upload(
        awkward["one"],
        "one.png is too small: 1 x 1 pixels. The style needs at least 16 pixels on each side (below that the "
        "network only sees an enlarged blur, and the result says nothing about the photo); upload a larger photo.",
    )
    screenshot(page, "browser-too-small.png")
    assert_no_server_details(page)
    from gradio_client import Client, handle_file

    with pytest.raises(Exception, match="one.png is too small"):  # through the API too: a job, refused
        Client(app_url, verbose=False).predict(handle_file(str(awkward["one"])), "shinkai", api_name="/stylize")
    log = app.wait_for_log("not done after")
    assert re.search(
        r"image job (\d+): one\.png, style shinkai.*\n.*image job \1: not done after \d+\.\d s: one\.png is too small",
        log,
    )
    assert "upload refused: truncated.jpg is damaged" in log

    page.get_by_role("tab", name="Video").click()
    page.locator("#clip input[type=file]").set_input_files(str(not_a_video))
    expected = "notes.mp4 is not a video this app can read. Upload an MP4, MOV, WebM or MKV clip."
    page.wait_for_function(f"document.querySelector('#video-note').innerText.includes({expected!r})")
    page.locator("#stylize-video").click()
    assert toast_saying(page, "notes.mp4") == expected
    screenshot(page, "browser-not-a-video.png")
    assert_no_server_details(page)

    page.locator("#clip button[aria-label='Clear']").first.click()
    page.locator("#clip input[type=file]").set_input_files(str(silent))
    page.wait_for_function("document.querySelector('#video-note').innerText.includes('no sound')")
    assert page.inner_text("#video-note").startswith(
        "Stylizing the whole clip (1.0 s) at 48 x 32 px, 12 frames. The clip has no sound. "
        "With the Makoto Shinkai model, smoothed with optical flow."
    )
    page.locator("#stylize-video").click()
    page.wait_for_function(
        "document.querySelector('#video-result').innerText.includes('Anime video (no sound)')", timeout=120_000
    )
    assert "Anime video (no sound)" in page.inner_text("#video-result")
    assert page.inner_text("#video-note").startswith("Done in ")
    assert "without sound (the clip has none)" in page.inner_text("#video-note")
    link = page.locator("#video-result a[download]").first
    assert link.get_attribute("download") == "silent walk-shinkai.mp4"
    screenshot(page, "browser-silent-clip.png")
    assert_no_server_details(page)


def test_offline_without_weights_the_page_says_why_nothing_runs(monkeypatch, tmp_path, page):
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI", raising=False)
    monkeypatch.delenv("SCENIMEFY_STYLE_HOSODA", raising=False)
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    demo = webapp.build_demo(max_side=256)
    url = serve(demo)
    try:
        open_app(page, url)
        assert page.inner_text("#style-note") == (
            "Not available. The Makoto Shinkai style cannot be used: this server has not downloaded its weights "
            "and cannot download them now (it has no internet access). No style can run on this server at the "
            'moment. If you run this server, open "Styles: where their weights come from" below (the same lines '
            "are in the server's log) for the commands that add the weights; otherwise, please come back later."
        )
        assert page.locator("#style input").input_value() == "Makoto Shinkai (not available)"
        assert page.locator("#stylize").is_disabled()
        page.get_by_role("button", name="Styles: where their weights come from").click()
        panel = page.inner_text("#style-status")  # the operator's instructions, copy-pasteable
        assert "--weights shinkai=PATH" in panel and "SCENIMEFY_STYLE_SHINKAI=PATH" in panel
        assert "scenimefy download shinkai" in panel and "scenimefy download hosoda" not in panel
        screenshot(page, "browser-offline.png")
        assert_no_server_details(page)
    finally:
        demo.close()


def test_live_start_is_off_while_the_style_cannot_run_and_stop_clears_the_rate(app_url, page):
    """No Start while the chosen style cannot run; a stream running when the style is switched to
    one that cannot run stops without a toast; after Stop no rate is left."""
    rate = "document.querySelector('#live-rate').innerText"
    open_app(page, app_url)
    page.get_by_role("tab", name="Live").click()
    choose_style(page, "Mamoru Hosoda (not available)")
    page.wait_for_function("document.querySelector('#live-note').innerText.includes('Hosoda')")
    page.wait_for_function("document.querySelector('#live-start').disabled")
    screenshot(page, "browser-live-hosoda.png")

    choose_style(page, "Makoto Shinkai")
    page.wait_for_function("!document.querySelector('#live-start').disabled")
    page.locator("#live-start").click()
    page.wait_for_function(f"/frames per second/.test({rate})", timeout=60_000)
    choose_style(page, "Mamoru Hosoda (not available)")  # while the stream runs
    page.wait_for_function(f"{rate} === ''", timeout=10_000)
    time.sleep(2)  # what a flood of refusals would have shown by now
    assert toasts(page) == []
    assert page.locator("#live-start").is_disabled() and page.inner_text("#live-start") == "Start"

    choose_style(page, "Makoto Shinkai")
    page.wait_for_function("!document.querySelector('#live-start').disabled")
    page.locator("#live-start").click()
    page.wait_for_function(f"/frames per second/.test({rate})", timeout=60_000)
    page.locator("#live-start").click()  # Stop
    page.wait_for_function(f"{rate} === ''", timeout=10_000)
    time.sleep(1.5)  # a frame still on its way does not bring it back
    assert page.inner_text("#live-rate") == ""
    assert toasts(page) == []


@pytest.mark.slow
def test_cancel_stops_the_video_worker_and_frees_its_memory(tmp_path, page):
    weights = tmp_path / "w"
    tiny_translator().save_pretrained(weights)
    server = AppProcess(
        tmp_path,
        ["--weights", f"shinkai={weights}", "--video-max-side", "960", "--video-seconds", "10", "--log-level", "debug"],
    )
    try:
        open_app(page, server.url)
        page.get_by_role("tab", name="Video").click()
        # A short job first: what any first job loads once (codecs, thread pools) is not the job's memory.
        warm = tmp_path / "warm.mp4"
        write_clip(warm, moving_square(6, 64, 48), rate=12)
        page.locator("#clip input[type=file]").set_input_files(str(warm))
        page.wait_for_function("document.querySelector('#video-note').innerText.includes('6 frames')")
        page.locator("#stylize-video").click()
        page.wait_for_function("document.querySelector('#video-note').innerText.startsWith('Done')", timeout=120_000)
        time.sleep(2)
        before = server.rss_mb()

        page.locator("#clip button[aria-label='Clear']").first.click()
        page.locator("#clip input[type=file]").set_input_files(str(DATA / "video" / "hanami.mp4"))
        page.locator("#video-note").get_by_text("9.5 s clip").wait_for(timeout=60_000)
        page.locator("[data-testid=number-input]").last.fill("10")  # the whole clip: a long job
        page.locator("[data-testid=number-input]").last.press("Enter")
        page.locator("#stylize-video").click()
        page.wait_for_function(
            "/Frame (1[0-9]|[2-9][0-9]) of/.test(document.querySelector('#video-note').innerText)", timeout=180_000
        )
        during = server.rss_mb()
        screenshot(page, "browser-video-running.png")
        running = page.inner_text("#video-note")
        assert re.search(r"Frame \d+ of 285: about .* left\.", running), running  # progress with time left
        page.locator("#cancel-video").click()
        log = server.wait_for_log("partial output removed", timeout=60)
        # The server logs the removal before the page's note has been redrawn: wait for the note.
        page.locator("#video-note").get_by_text("Cancelled:").wait_for(timeout=15_000)
        assert page.locator("#video-note").inner_text() == "Cancelled: the video was not made."
        assert page.locator("#video-result video").count() == 0  # the earlier result is not shown as this one

        lines = log.splitlines()
        requested = next(i for i, line in enumerate(lines) if "cancel requested" in line)
        stopped = next(i for i, line in enumerate(lines) if "cancelled after" in line)
        frames_after_cancel = [line for line in lines[requested:stopped] if "frame" in line and "done" in line]
        print("\n".join(lines[requested - 2 : stopped + 1]))
        assert len(frames_after_cancel) <= 2, frames_after_cancel  # the worker stops within a frame or two
        cpu = server.cpu_seconds()
        time.sleep(3)
        assert server.cpu_seconds() - cpu < 0.5  # nothing runs any more
        assert "frame" not in server.log().split("cancelled after", 1)[1].replace("frames; partial", "")
        after = server.rss_mb()
        print(f"server memory: {before:.0f} MB before the job, {during:.0f} MB during it, {after:.0f} MB after cancel")
        assert during - before > 50  # the job held frames, decoder and encoder buffers ...
        assert after - before < 0.25 * (during - before), (before, during, after)  # ... and gave them back
        scratch = server.tmp / "scenimefy-app"
        assert not [p for p in scratch.rglob("*") if "hanami" in p.name]  # the partial file is gone
        screenshot(page, "browser-video-cancelled.png")
    finally:
        server.stop()
