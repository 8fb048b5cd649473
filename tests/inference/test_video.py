"""Video stylization: the real test clip, and generated clips with awkward properties."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.stabilize import FlickerMeter, NormStatsSmoother
from scenimefy.inference.video import iter_stylize_video, stylize_video
from scenimefy.inference.video_io import VideoError, output_size, probe_video
from tests.support.fixtures import tiny_translator
from tests.support.paths import DATA
from tests.support.videos import moving_square, write_clip

HANAMI = DATA / "video" / "hanami.mp4"


@pytest.fixture(scope="module")
def pipe() -> ScenimefyPipeline:
    return ScenimefyPipeline(tiny_translator())


def read_video(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        return {
            "frames": len(frames),
            "size": (frames[0].width, frames[0].height),
            "times": [f.time for f in frames],
            "rotation": frames[0].rotation,
            "rate": v.average_rate,
            "codec": v.codec_context.name,
            "audio": c.streams.audio[0].codec_context.name if c.streams.audio else None,
            "audio_seconds": float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
            if c.streams.audio
            else 0,
            "first": frames[0].to_ndarray(format="rgb24"),
        }


# --------------------------------------------------------------------------- the real clip


@pytest.mark.slow
def test_hanami_first_two_seconds(pipe, tmp_path):
    out = tmp_path / "hanami.mp4"
    result = stylize_video(pipe, HANAMI, out, duration=2, max_side=192, progress=False)
    src = probe_video(HANAMI)
    got = read_video(out)
    assert got["frames"] == result.frames == 60  # 2 s at 30 fps
    assert got["codec"] == "h264" and got["size"] == (108, 192)
    assert abs(float(got["rate"]) - float(src.fps)) < 0.05
    assert got["audio"] == "aac" and result.audio == "copied"
    assert abs(got["audio_seconds"] - 2.0) < 0.1
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed


# --------------------------------------------------------------------------- generated clips


def test_clip_without_audio_keeps_frames_and_fps(pipe, tmp_path):
    src, out = tmp_path / "silent.mp4", tmp_path / "out.mp4"
    write_clip(src, moving_square(12, 64, 48), rate=12)
    result = stylize_video(pipe, src, out, progress=False)
    got = read_video(out)
    assert result.audio == "none" and got["audio"] is None
    assert got["frames"] == 12 and got["size"] == (64, 48)
    assert abs(float(got["rate"]) - 12) < 0.05
    assert np.abs(got["first"].astype(int) - moving_square(1, 64, 48)[0]).mean() > 5  # stylized


def test_rotation_is_kept_and_the_network_sees_upright_frames(pipe, tmp_path, monkeypatch):
    src, out = tmp_path / "phone.mp4", tmp_path / "out.mp4"
    write_clip(src, moving_square(6, 64, 32), rotation=90)
    assert probe_video(src).rotation == 90
    seen = []
    real = pipe.stylize_frames
    monkeypatch.setattr(pipe, "stylize_frames", lambda f, **kw: seen.append(f.shape) or real(f, **kw))
    stylize_video(pipe, src, out, progress=False)
    got = read_video(out)
    assert got["rotation"] == 90 and got["size"] == (64, 32)  # stored as the input, same matrix
    assert all(shape[1:3] == (64, 32) for shape in seen)  # (H, W) upright: the 64x32 frame turned


def test_odd_size_drops_the_last_line(pipe, tmp_path):
    src, out = tmp_path / "odd.mkv", tmp_path / "out.mp4"
    write_clip(src, moving_square(5, 37, 27), pix_fmt="yuv444p")
    result = stylize_video(pipe, src, out, progress=False)
    got = read_video(out)
    assert (result.width, result.height) == got["size"] == (36, 26)
    assert got["frames"] == 5


def test_variable_frame_rate_keeps_timestamps(pipe, tmp_path):
    src, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    pts = [0, 40, 100, 120, 250, 290, 400, 480]  # ms
    write_clip(src, moving_square(len(pts), 48, 32), pts=pts)
    stylize_video(pipe, src, out, progress=False)
    got = read_video(out)
    assert got["frames"] == len(pts)
    assert np.allclose(got["times"], [p / 1000 for p in pts], atol=2e-3)


def test_pcm_audio_is_reencoded_to_aac_and_aac_is_copied(pipe, tmp_path):
    pcm, aac = tmp_path / "pcm.mkv", tmp_path / "aac.mp4"
    write_clip(pcm, moving_square(10, 32, 32), audio="pcm_s16le")
    write_clip(aac, moving_square(10, 32, 32), audio="aac")
    r1 = stylize_video(pipe, pcm, tmp_path / "o1.mp4", progress=False)
    r2 = stylize_video(pipe, aac, tmp_path / "o2.mp4", progress=False)
    assert r1.audio == "re-encoded" and read_video(tmp_path / "o1.mp4")["audio"] == "aac"
    assert r2.audio == "copied" and read_video(tmp_path / "o2.mp4")["audio"] == "aac"
    assert abs(read_video(tmp_path / "o1.mp4")["audio_seconds"] - 1.0) < 0.15


def test_time_range(pipe, tmp_path):
    src, out = tmp_path / "long.mp4", tmp_path / "out.mp4"
    write_clip(src, moving_square(30, 32, 32), audio="aac")  # 3 s at 10 fps
    result = stylize_video(pipe, src, out, start=1.0, duration=1.0, progress=False)
    got = read_video(out)
    assert result.frames == got["frames"] == 10
    assert got["times"][0] == pytest.approx(0.0, abs=1e-3)
    assert abs(got["audio_seconds"] - 1.0) < 0.15


def test_progress_callback_counts_frames(pipe, tmp_path):
    src = tmp_path / "c.mp4"
    write_clip(src, moving_square(9, 32, 32))
    calls = []
    stylize_video(
        pipe, src, tmp_path / "o.mp4", batch_size=4, progress=False, on_progress=lambda d, t: calls.append((d, t))
    )
    assert [d for d, _ in calls] == [4, 8, 9] and calls[-1][1] == 9


def test_max_side_scales_down(pipe, tmp_path):
    src = tmp_path / "c.mp4"
    write_clip(src, moving_square(3, 96, 64))
    result = stylize_video(pipe, src, tmp_path / "o.mp4", max_side=48, progress=False)
    assert (result.width, result.height) == read_video(tmp_path / "o.mp4")["size"] == (48, 32)
    assert output_size(541, 961, 100) == (56, 100) and output_size(541, 961) == (540, 960)


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_video_error_and_leave_nothing(pipe, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    clip = tmp_path / "c.mp4"
    write_clip(clip, moving_square(5, 32, 32))
    cases = [
        (text, tmp_path / "o.mp4", {}, "not a video"),
        (empty, tmp_path / "o.mp4", {}, "empty"),
        (tmp_path / "missing.mp4", tmp_path / "o.mp4", {}, "no such file"),
        (clip, tmp_path / "o.avi", {}, "output must end"),
        (clip, tmp_path / "o.mp4", {"start": 60.0}, "no frames"),
        (clip, tmp_path / "o.mp4", {"duration": 0}, "duration"),
    ]
    for src, dst, kwargs, message in cases:
        with pytest.raises(VideoError, match=message):
            stylize_video(pipe, src, dst, progress=False, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "empty.mp4", "notes.mp4"]


def decode_all(path: Path) -> int:
    """Every frame of ``path`` decodes (raises otherwise); returns the count."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def test_truncated_and_corrupt_clips_give_the_frames_read_so_far(pipe, tmp_path):
    """Policy (docs/video.md): damaged packets are skipped, a file cut short ends the output where
    its data ends; the result is a whole, playable file and says it is incomplete."""
    frames = moving_square(30, 64, 48)
    cases = {}
    for name, kwargs in (("cut.mkv", {}), ("cut.mp4", {"faststart": True}), ("holes.mp4", {"faststart": True})):
        whole = tmp_path / f"whole-{name}"
        write_clip(whole, frames, audio="aac", **kwargs)
        data = bytearray(whole.read_bytes())
        if name.startswith("cut"):
            data = data[: len(data) * 55 // 100]  # the download / copy stopped part-way
        else:
            mid = len(data) // 2
            data[mid : mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
        cases[name] = tmp_path / name
        cases[name].write_bytes(bytes(data))
    for name, src in cases.items():
        out = tmp_path / f"out-{name}.mp4"
        result = stylize_video(pipe, src, out, progress=False, preset="ultrafast")
        assert not result.complete, name
        assert 3 <= result.frames < 30 or (name == "holes.mp4" and result.damaged > 0), (name, result)
        assert decode_all(out) == result.frames  # a whole file: every frame decodes
        assert read_video(out)["codec"] == "h264"
    # An mp4 whose index (moov) sits at the end and was cut off cannot be opened at all: a clear error.
    indexless = tmp_path / "no-index.mp4"
    write_clip(indexless, frames)
    indexless.write_bytes(indexless.read_bytes()[: indexless.stat().st_size // 2])
    with pytest.raises(VideoError, match="not a video file FFmpeg can read") as err:
        stylize_video(pipe, indexless, tmp_path / "never.mp4", progress=False)
    assert err.value.kind == "unreadable" and "Errno" not in str(err.value)
    assert not (tmp_path / "never.mp4").exists() and leftovers(tmp_path) == []


def test_closing_a_job_stops_it_and_removes_the_partial_output(pipe, tmp_path, monkeypatch):
    src, dst = tmp_path / "c.mp4", tmp_path / "out.mp4"
    write_clip(src, moving_square(30, 64, 48), audio="aac")
    calls = []
    real = pipe.stylize_frames
    monkeypatch.setattr(pipe, "stylize_frames", lambda f, **kw: calls.append(len(f)) or real(f, **kw))
    job = iter_stylize_video(pipe, src, dst, batch_size=2, preset="ultrafast")
    first = next(job)
    assert first.done == 0 and first.total == 30 and (first.plan.width, first.plan.height) == (64, 48)
    assert [next(job).done for _ in range(3)] == [2, 4, 6]
    assert leftovers(tmp_path) != []  # the partial file exists while the job runs
    job.close()
    assert sum(calls) == 6  # no frame after the close
    assert leftovers(tmp_path) == [] and not dst.exists()


def test_full_disk_gives_one_line_and_removes_the_partial_video(tmp_path):
    weights = tmp_path / "w"
    tiny_translator().save_pretrained(weights)
    src = tmp_path / "c.mp4"
    write_clip(src, moving_square(30, 96, 64))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "scenimefy", "video", str(src), "-o", str(out / "anime.mp4"), "--weights", str(weights)]
        + ["--crf", "0", "--preset", "ultrafast", "--batch-size", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)),  # a "disk" of 20 kB
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file size limit" in errors[0] and "partial file was removed" in errors[0]
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []  # no partial file, no output


# --------------------------------------------------------------------------- stabilisation


def test_smoother_momentum_zero_is_identity_and_order_does_not_matter():
    torch.manual_seed(0)
    stats = [(torch.rand(4, 8), torch.rand(4, 8) + 0.5) for _ in range(3)]  # 3 layers, 4 frames
    raw = NormStatsSmoother(momentum=0.0)
    for layer, (m, v) in enumerate(stats):
        assert torch.equal(raw(layer, m, v)[0], m)
    batched, single = NormStatsSmoother(0.8, cut_threshold=1e9), NormStatsSmoother(0.8, cut_threshold=1e9)
    by_layer = [batched(layer, m, v) for layer, (m, v) in enumerate(stats)]  # layer by layer, whole batch
    by_frame = {}
    for b in range(4):  # frame by frame, all layers (how a per-sample fast path calls it)
        for layer, (m, v) in enumerate(stats):
            by_frame.setdefault(layer, []).append(single(layer, m[b : b + 1], v[b : b + 1]))
    for layer in range(3):
        assert torch.allclose(by_layer[layer][0], torch.cat([o[0] for o in by_frame[layer]]))
        assert torch.allclose(by_layer[layer][1], torch.cat([o[1] for o in by_frame[layer]]))
    # the EMA itself: frame 1 = 0.8 * frame 0 + 0.2 * raw frame 1
    m, _ = stats[0]
    assert torch.allclose(by_layer[0][0][1], 0.8 * m[0] + 0.2 * m[1])


def test_smoother_restarts_at_a_scene_cut():
    s = NormStatsSmoother(0.9)
    calm = torch.zeros(1, 4), torch.ones(1, 4)
    s(0, *calm), s(1, *calm)
    jump = torch.full((1, 4), 5.0), torch.ones(1, 4)
    assert torch.equal(s(0, *jump)[0], jump[0]) and torch.equal(s(1, *jump)[0], jump[0])
    assert s.cuts == 1


def test_flicker_meter():
    x = [np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30)]
    meter = FlickerMeter()
    meter.update(np.stack(x), np.stack([np.full((4, 4, 3), v, np.uint8) for v in (0, 20, 40)]))
    result = meter.result()
    assert result.pairs == 2 and result.index == pytest.approx(2.0)
    still = FlickerMeter()
    still.update(np.stack([x[0]] * 3), np.stack([np.full((4, 4, 3), v, np.uint8) for v in (0, 6, 0)]))
    assert still.result().static == pytest.approx(6.0)


def test_translate_norm_stats_hook(pipe):
    from scenimefy.inference.engine import translate

    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    calls = []

    def identity(layer, mean, var):
        calls.append((layer, tuple(mean.shape)))
        return mean, var

    plain = translate(pipe.translator, x, exact=True)
    hooked = translate(pipe.translator, x, exact=True, norm_stats=identity)
    assert torch.allclose(plain, hooked, atol=1e-5)  # the hook sees the statistics the layer uses
    layers = len(calls) // 2
    assert [c[0] for c in calls] == list(range(layers)) * 2 and all(c[1][0] == 1 for c in calls)
    calls.clear()
    tiled = translate(pipe.translator, x, exact=True, norm_stats=identity, tile_size=16)
    assert torch.allclose(plain, tiled, atol=1e-4) and [c[0] for c in calls] == list(range(layers)) * 2
    # statistics replaced: a different picture
    shifted = translate(pipe.translator, x, exact=True, norm_stats=lambda i, m, v: (m + 0.5, v))
    assert (shifted - plain).abs().mean() > 1e-2


@pytest.mark.parametrize("mode", ["stats", "filter", True])
def test_stabilisation_lowers_flicker(pipe, tmp_path, mode):
    src = tmp_path / "square.mp4"
    write_clip(src, moving_square(24, 64, 48))
    plain = stylize_video(pipe, src, tmp_path / "a.mp4", stabilize=False, measure_flicker=True, progress=False)
    steady = stylize_video(pipe, src, tmp_path / "b.mp4", stabilize=mode, measure_flicker=True, progress=False)
    assert steady.flicker.static < plain.flicker.static
    assert steady.flicker.index < plain.flicker.index


# --------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli_video(tmp_path):
    weights = tmp_path / "w"
    tiny_translator().save_pretrained(weights)
    src = tmp_path / "c.mp4"
    write_clip(src, moving_square(8, 32, 32), audio="aac")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenimefy",
            "video",
            str(src),
            "-o",
            str(tmp_path / "o.mp4"),
            "--weights",
            str(weights),
            "--no-stabilize",
            "--duration",
            "0.5",
            "--flicker",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "5 frames" in result.stdout and "flicker index" in result.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenimefy",
            "video",
            str(tmp_path / "nope.mp4"),
            "-o",
            str(tmp_path / "x.mp4"),
            "--weights",
            str(weights),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no such file" in bad.stderr
