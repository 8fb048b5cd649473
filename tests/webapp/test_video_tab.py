"""The Video tab's smoothness choice, "reuse frames", and a note / estimate / job that agree.

The estimate's arithmetic is checked on real result objects; the rest in headless Chromium
against the app in its own process (``python app.py``), with tiny full and lite weights."""

from __future__ import annotations

import io
import re
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.inference.video import VideoPlan, VideoResult
from scenimefy.inference.video_io import VideoInfo
from scenimefy.models.lite import ScenimefyLiteTranslator
from scenimefy.webapp.video_tab import REUSE, Speeds, VideoJob, clip_note
from tests.support.browser import CHROMIUM, launch_chromium, open_app, screenshot
from tests.support.paths import SAMPLES
from tests.support.videos import write_clip
from tests.support.webapp import AppProcess, tiny_shinkai_env


def plan(frames: int = 150, width: int = 960, height: int = 540) -> VideoPlan:
    info = VideoInfo(
        width=width, height=height, fps=Fraction(30), frames=285, duration=9.5, rotation=0, audio_codec="aac"
    )
    return VideoPlan(width, height, width, height, 0.0, frames / 30, 9.5, frames, info)


def job(model: str = "shinkai", *, keyframes: int = 1, temporal: str = "flow", frames: int = 150) -> VideoJob:
    fast = model.endswith("-lite")
    title = "Makoto Shinkai (fast)" if fast else "Makoto Shinkai"
    return VideoJob(plan(frames), frames / 30, "shinkai", model, title, fast, temporal, keyframes)


def result(frames: int, network_frames: int, seconds: float, network_seconds: float) -> VideoResult:
    return VideoResult(
        path=None,
        frames=frames,
        width=960,
        height=540,
        fps=Fraction(30),
        audio="copied",
        seconds=seconds,
        network_frames=network_frames,
        network_seconds=network_seconds,
    )


def test_the_estimate_prices_the_model_the_frames_it_runs_on_and_the_method():
    speeds = Speeds({}, {})
    assert speeds.estimate(job()) is None  # nothing measured: no guess
    assert "estimated once the Makoto Shinkai model has made a video" in clip_note(job(), seconds=None)
    # A full-model job: 150 frames, 1.3 s of network each, 0.1 s of the rest each.
    speeds.record(job(), result(150, 150, 150 * 1.4, 150 * 1.3))
    assert speeds.estimate(job()) == pytest.approx(150 * 1.4)
    assert speeds.estimate(job(frames=30)) == pytest.approx(30 * 1.4)
    assert speeds.estimate(job("shinkai-lite")) is None  # Fast: another model, not measured yet
    # reusing frames: the network on 1 + ceil(149 / 2) = 76 frames, the rest on all 150
    keyed = job(keyframes=REUSE)
    assert keyed.network_frames == 76
    assert speeds.estimate(keyed) == pytest.approx(76 * 1.3 + 150 * 0.1)
    speeds.record(job("shinkai-lite"), result(150, 150, 150 * 0.3, 150 * 0.2))
    assert speeds.estimate(job("shinkai-lite")) == pytest.approx(150 * 0.3)
    missing = VideoJob(plan(), 5.0, "shinkai", "shinkai", "Makoto Shinkai", False, "flow", 1, fast_missing=True)
    assert clip_note(missing) == (
        "The Makoto Shinkai style has no fast model on this server. Untick Fast to stylize this clip."
    )  # as the job says when it refuses
    note = clip_note(keyed, seconds=speeds.estimate(keyed))
    assert note == (
        "Stylizing the first 5.0 s of the 9.5 s clip at 960 x 540 px, 150 frames. With the Makoto Shinkai model, "
        "smoothed with optical flow; reusing frames: the network runs on about 76 of the 150 frames (more where the "
        "motion is hard to follow), the others are warped from them. On this server that takes about 1 min 54 s."
    )


# --------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    mp = tiny_shinkai_env(tmp_path_factory)
    mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf")))
    lite = tmp_path_factory.mktemp("lite")
    torch.manual_seed(1)
    ScenimefyLiteTranslator(channels=(8, 16, 32), n_blocks=1).save_pretrained(lite)
    mp.setenv("SCENIMEFY_STYLE_SHINKAI_LITE", str(lite))
    server = AppProcess(
        tmp_path_factory.mktemp("app"), ["--max-side", "256", "--video-max-side", "64", "--video-seconds", "10"]
    )
    yield server
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


def panning(n: int) -> list[np.ndarray]:
    """A 64 x 48 window panning 1 px per frame over a photo: motion the flow follows everywhere."""
    photo = np.asarray(Image.open(SAMPLES / "teaser-0.jpg").convert("RGB").resize((128, 72), Image.BICUBIC))
    return [np.ascontiguousarray(photo[12:60, t : t + 64]) for t in range(n)]


def note_says(page, text: str, timeout: float = 30_000) -> str:
    page.wait_for_function(f"document.querySelector('#video-note').innerText.includes({text!r})", timeout=timeout)
    return page.inner_text("#video-note")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make browser-deps)")
def test_smoothness_choice_reuse_and_a_note_that_matches_the_job(app, page, tmp_path):
    clip = tmp_path / "walk.mp4"
    write_clip(clip, panning(30), rate=12)  # 2.5 s
    open_app(page, app.url)
    page.get_by_role("tab", name="Video").click()
    for label in ("Smooth (optical flow)", "Steady colours only", "Off (every frame on its own)"):
        assert page.locator("#smoothness").get_by_text(label).is_visible()
    assert page.locator("#smoothness input[value=flow]").is_checked()
    assert page.locator("#video-reuse").get_by_text("Faster: reuse frames").is_visible()

    page.locator("#clip input[type=file]").set_input_files(str(clip))
    note = note_says(page, "30 frames")
    assert note.startswith("Stylizing the whole clip (2.5 s) at 64 x 48 px, 30 frames. The clip has no sound. ")
    assert "With the Makoto Shinkai model, smoothed with optical flow." in note
    assert "The time is estimated once the Makoto Shinkai model has made a video on this server." in note

    # typed + Enter: the note follows at once
    seconds = page.locator("#video-seconds input[type=number]")
    seconds.fill("1")
    seconds.press("Enter")
    note_says(page, "the first 1.0 s of the 2.5 s clip at 64 x 48 px, 12 frames")
    # arrow keys on the resolution slider: 64 -> 48 px
    page.locator("#video-side input[type=range]").focus()
    page.keyboard.press("ArrowLeft")
    note_says(page, "at 48 x 36 px (the clip is 64 x 48 px), 12 frames")
    # the choices
    page.locator("#smoothness").get_by_text("Steady colours only").click()
    note_says(page, "with steady colours (no optical flow)")
    page.locator("#smoothness").get_by_text("Smooth (optical flow)").click()
    page.locator("#video-reuse").get_by_text("Faster: reuse frames").click()
    note_says(page, "reusing frames: the network runs on about 7 of the 12 frames")
    page.locator("#video-fast").get_by_text("Fast (lite model)").click()
    note = note_says(page, "With the fast model (Makoto Shinkai (fast))")
    assert "The time is estimated once the Makoto Shinkai (fast) model has made a video" in note
    screenshot(page, "browser-video-options.png")

    page.locator("#stylize-video").click()
    done = note_says(page, "Done in", timeout=120_000)
    assert "the first 1.0 s of the 2.5 s clip at 48 x 36 px (the clip is 64 x 48 px), 12 frames" in done, done
    link = page.locator("#video-result a[download]").first
    link.wait_for(state="attached", timeout=30_000)
    assert link.get_attribute("download") == "walk-shinkai-lite.mp4"
    log = app.wait_for_log("video job walk-shinkai-lite.mp4: done")
    assert re.search(r"network on 7 of 12 frames, temporal flow", log), log[-2000:]
    # playable: the page's video loads its metadata, and the file decodes to the job's frames
    video = page.locator("#video-result video").first
    video.wait_for(state="attached", timeout=30_000)
    page.wait_for_function("document.querySelector('#video-result video').readyState >= 1", timeout=30_000)
    data = page.request.get(video.get_attribute("src")).body()
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (36, 48, 3)
    assert np.std(frames[0]) > 1  # a picture, not a blank frame

    # The estimate now prices the fast model (it ran) and not the full one (it did not).
    page.locator("#video-side input[type=number]").fill("64")  # any change redraws the note
    page.locator("#video-side input[type=number]").press("Enter")
    note = note_says(page, "On this server that takes about")
    assert "at 64 x 48 px, 12 frames" in note
    assert "With the fast model" in note
    page.locator("#video-fast").get_by_text("Fast (lite model)").click()
    note = note_says(page, "With the Makoto Shinkai model")
    assert "The time is estimated once the Makoto Shinkai model has made a video on this server." in note
