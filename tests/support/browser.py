"""Headless Chromium (the Debian package, never a downloaded browser) driven by Playwright, for
the web app's browser tests: launching it (optionally with a fake camera showing a known
picture), opening the app, and reading what the page shows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.paths import REPO

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


def fake_camera_flags(video: Path) -> list[str]:
    """A camera that plays ``video`` (a .y4m file, looped), granted without asking."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


def write_y4m(path: Path, frames: list[np.ndarray], rate: int = 10) -> None:
    """RGB frames (H, W, 3) uint8 of one even size as a YUV4MPEG2 clip (4:2:0, full-range JPEG
    colours), the format Chromium's fake camera plays (in a loop)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{rate}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            y, cb, cr = (np.asarray(c) for c in Image.fromarray(rgb).convert("YCbCr").split())
            half = (w // 2, h // 2)
            cb = np.asarray(Image.fromarray(cb).resize(half, Image.BILINEAR))
            cr = np.asarray(Image.fromarray(cr).resize(half, Image.BILINEAR))
            f.write(b"FRAME\n" + y.tobytes() + cb.tobytes() + cr.tobytes())


def launch_chromium(playwright, extra_args: list[str] = ()):
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*FLAGS, *extra_args])


def open_app(page, url: str) -> None:
    """Open the app and wait until it is drawn and its load event (the styles' availability) has
    answered. (Not ``networkidle``: a page with a streaming component keeps a heartbeat open.)"""
    with page.expect_response(lambda r: r.url.endswith("/gradio_api/run/predict"), timeout=90_000):
        page.goto(url, wait_until="load")
    page.locator("#style-note").wait_for(state="visible", timeout=60_000)
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def toasts(page) -> list[str]:
    """The rendered text of every toast the page shows now."""
    return [t.inner_text() for t in page.locator("[data-testid=toast-text]").all()]


def toast_saying(page, text: str, timeout: float = 60) -> str:
    """The rendered text of the toast that contains ``text`` (then all toasts are closed)."""
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while time.monotonic() < deadline:
        shown = [t.inner_text() for t in page.locator("[data-testid=toast-text]").all()]
        found = [t for t in shown if text in t]
        if found:
            from playwright.sync_api import Error as PlaywrightError

            for close in page.locator("[data-testid=toast-close]").all():
                try:
                    close.click(timeout=2_000)
                except PlaywrightError:  # it closed by itself (or is fading out) meanwhile
                    pass
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no toast saying {text!r}; toasts: {shown}")


def assert_no_server_details(page) -> None:
    body = page.evaluate("document.body.innerText")
    for leak in ("/tmp/", "Errno", "Traceback", "Error:", "<folder"):
        assert leak not in body, (leak, body[-2000:])


def choose_style(page, label: str) -> None:
    page.locator("#style input").click()
    page.get_by_role("option", name=label).click()
