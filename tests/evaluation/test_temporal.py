"""E_warp (Lai et al. 2018) on synthetic sequences whose flow is known exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from scenimefy.cli.evaluate import video_warp_error
from scenimefy.evaluation.temporal import (
    backward_warp,
    farneback_flow,
    occlusion_mask,
    warp_error,
)
from tests.support.videos import write_clip


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture (blurred noise): flow estimators and bilinear warps see it well."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 250, 0, 255).astype(np.uint8)


def translated(image: np.ndarray, n: int, dx: int) -> list[np.ndarray]:
    """Frames t = image shifted right by t * dx pixels (the left border column repeated)."""
    frames = []
    for t in range(n):
        s = t * dx
        f = np.concatenate([np.repeat(image[:, :1], s, axis=1), image[:, : image.shape[1] - s]], axis=1)
        frames.append(f)
    return frames


def constant_flow(h: int, w: int, dx: float, dy: float = 0.0) -> np.ndarray:
    return np.broadcast_to(np.array([dx, dy], np.float32), (h, w, 2)).copy()


def test_translation_gives_zero_with_the_true_flow_and_a_large_error_with_a_wrong_one():
    frames = translated(texture(40, 64), 4, 3)  # content moves 3 px right per frame
    h, w = frames[0].shape[:2]
    true = [(constant_flow(h, w, 3), constant_flow(h, w, -3))] * 3
    good = warp_error(frames, frames, flows=true)
    assert good.output < 1e-12 and good.pairs == 3
    assert good.masked == pytest.approx(3 / 64, abs=1e-9)  # the 3 columns that leave the frame
    wrong = [(constant_flow(h, w, -3), constant_flow(h, w, 3))] * 3
    bad = warp_error(frames, frames, flows=wrong)
    assert bad.output > 100 * max(good.output, 1e-6) and bad.output > 5e-3
    # Graded with Farneback on the frames themselves: close to the true-flow value.
    graded = warp_error(frames, frames)
    assert graded.output < 0.1 * bad.output


def test_an_occluder_is_masked():
    """A square that jumps over a static background: where it was and where it is now are occluded
    (forward-backward check) or motion boundaries; the static rest is not."""
    h, w = 48, 64
    fw = np.zeros((h, w, 2), np.float32)
    bw = np.zeros((h, w, 2), np.float32)
    fw[10:20, 10:20] = (20, 0)  # the square moves 20 px right: t's square -> t+1 at x 30..40
    bw[10:20, 30:40] = (-20, 0)  # t+1's square comes from 20 px left; the uncovered area stays (0, 0)
    occ = occlusion_mask(fw, bw)
    assert not occ[30:, :].any()  # the background below never changes
    assert not occ[10:20, 10:20][2:-2, 2:-2].any()  # inside the square: consistent both ways
    # Pixels at t that the square covers at t+1 (x 30..40, static at t) are occluded: following
    # F_f = 0 lands on the square, whose F_b (-20) does not come back.
    assert occ[10:20, 30:40].all()
    # Its edges are motion boundaries.
    assert occ[10:20, 9].all() and occ[10:20, 19:21].all()
    # A video with this motion: the background the square uncovers at t+1 (x 10..20) was hidden at
    # t, so no unmasked pixel of t is compared with it: garbage there costs nothing ...
    bg = texture(h, w, seed=1)
    a, b = bg.copy(), bg.copy()
    a[10:20, 10:20] = 250
    b[10:20, 30:40] = 250
    out_b = b.copy()
    out_b[10:20, 10:20] = 0
    assert warp_error([a, b], [a, out_b], flows=[(fw, bw)]).output < 1e-12
    # ... while garbage where the square landed (visible at t+1, tracked from t) is counted.
    out_b = b.copy()
    out_b[12:18, 32:38] = 0
    assert warp_error([a, b], [a, out_b], flows=[(fw, bw)]).output > 1e-3


def test_value_equals_a_direct_float64_computation():
    """E_warp of one pair against a per-pixel loop written straight from the definition."""
    rng = np.random.default_rng(3)
    h, w = 9, 13
    x0, x1 = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    y0, y1 = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    fw = np.stack([0.7 + 0.02 * xx, -0.4 + 0.03 * yy], -1).astype(np.float32)  # smooth: few boundaries
    fw[2:4, 3:6] += 2.5  # ... except a patch with its own motion
    bw = -fw + rng.normal(0, 0.2, (h, w, 2))
    bw[rng.random((h, w)) < 0.15] += 3  # and backward flow that does not come back here and there
    bw = bw.astype(np.float32)

    def bilinear(img, x, y):
        x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
        i, j = min(int(np.floor(x)), w - 2), min(int(np.floor(y)), h - 2)
        fx, fy = x - i, y - j
        return (
            img[j, i] * (1 - fx) * (1 - fy)
            + img[j, i + 1] * fx * (1 - fy)
            + img[j + 1, i] * (1 - fx) * fy
            + img[j + 1, i + 1] * fx * fy
        )

    f = fw.astype(np.float64)
    grads = sum(np.gradient(f[..., c])[0] ** 2 + np.gradient(f[..., c])[1] ** 2 for c in range(2))
    total, count = 0.0, 0
    for j in range(h):
        for i in range(w):
            u, v = f[j, i]
            x, y = i + u, j + v
            if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                continue
            b = bilinear(bw.astype(np.float64), x, y)
            if ((u + b[0]) ** 2 + (v + b[1]) ** 2) > 0.01 * (u * u + v * v + b[0] ** 2 + b[1] ** 2) + 0.5:
                continue
            if grads[j, i] > 0.01 * (u * u + v * v) + 0.002:
                continue
            warped = bilinear(y1.astype(np.float64) / 255, x, y)
            total += float(((warped - y0[j, i].astype(np.float64) / 255) ** 2).sum())
            count += 3
    assert 0.3 * h * w * 3 < count < 0.95 * h * w * 3  # some pixels masked, most not
    report = warp_error([x0, x1], [y0, y1], flows=[(fw, bw)])
    assert report.output == pytest.approx(total / count, rel=1e-12)


def test_backward_warp_samples_at_x_plus_flow():
    img = np.arange(20, dtype=np.float64).reshape(4, 5)
    out, inside = backward_warp(img, constant_flow(4, 5, 1.0, 0.5))
    assert out[0, 0] == pytest.approx((1 + 6) / 2) and inside[0, :4].all() and not inside[:, 4].any()


def test_farneback_recovers_a_shift():
    frames = translated(texture(64, 96), 2, 2)
    flow = farneback_flow(frames[0], frames[1])
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(2.0, abs=0.15)


@pytest.mark.slow
def test_video_files_and_the_cli(tmp_path):
    frames = translated(texture(48, 64), 6, 1)
    src, steady, noisy = tmp_path / "in.mp4", tmp_path / "steady.mp4", tmp_path / "noisy.mp4"
    write_clip(src, frames, pix_fmt="yuv444p")
    write_clip(steady, [255 - f for f in frames], pix_fmt="yuv444p")
    rng = np.random.default_rng(0)
    write_clip(noisy, [rng.integers(0, 256, f.shape, dtype=np.uint8) for f in frames], pix_fmt="yuv444p")
    a, b = video_warp_error(src, steady), video_warp_error(src, noisy)
    assert a.pairs == b.pairs == 5
    assert a.output < 3 * a.input + 1e-3 and b.output > 50 * a.output
    run = subprocess.run(
        [sys.executable, "-m", "scenimefy", "evaluate", "--metric", "warp", str(src), str(noisy)]
        + ["--json", str(tmp_path / "w.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "E_warp" in run.stdout and "input's own E_warp" in run.stdout and "flicker index" in run.stdout
    import json

    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["output"] == pytest.approx(b.output) and saved["pairs"] == 5
    bad = subprocess.run(
        [sys.executable, "-m", "scenimefy", "evaluate", "--metric", "warp", str(src), str(tmp_path / "nope.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
