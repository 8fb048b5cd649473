"""The web app on a real Gradio server, called through gradio_client."""

import json
import os
import threading
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import app as webapp
from scenimefy.webapp import media, styles
from tests.support.fixtures import gradient
from tests.support.paths import SAMPLES
from tests.support.videos import moving_square, write_clip
from tests.support.webapp import page_config, serve, tiny_shinkai_env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    mp = tiny_shinkai_env(tmp_path_factory)
    demo = webapp.build_demo(max_side=128, video_max_side=64, video_seconds=2)
    url = serve(demo, max_queue=8)
    yield url
    demo.close()
    mp.undo()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_stylize_through_the_server(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    src = SAMPLES / "teaser-0.jpg"
    out_path, note = client.predict(handle_file(str(src)), "shinkai", api_name="/stylize")
    assert Path(out_path).name == "teaser-0-shinkai.png"  # the download is named after the photo and style
    out = Image.open(out_path)
    assert out.size == Image.open(src).size
    diff = np.abs(np.asarray(out.convert("RGB"), dtype=int) - np.asarray(Image.open(src).convert("RGB"), dtype=int))
    assert diff.mean() > 5  # a stylized image, not the input echoed back


def test_missing_weights_message_is_plain_and_never_suggests_a_download(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(SAMPLES / "teaser-0.jpg")), "hosoda", api_name="/stylize")
    message = str(err.value)
    assert "The Mamoru Hosoda style cannot be used: no weights for it have been published yet" in message
    assert "Choose Makoto Shinkai instead." in message
    for operator_words in ("download", "SCENIMEFY_", "--weights", "Traceback", "<"):
        assert operator_words not in message


def test_style_choices_and_the_opening_style(monkeypatch, tmp_path):
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI", raising=False)
    monkeypatch.delenv("SCENIMEFY_STYLE_HOSODA", raising=False)
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    states = styles.style_states()
    labels = {value: label for label, value in styles.style_choices(states)}
    assert labels == {"shinkai": "Makoto Shinkai (not available)", "hosoda": "Mamoru Hosoda (not available)"}
    assert styles.default_style(states) == "shinkai"  # nothing can run: the authors' style
    monkeypatch.setenv("SCENIMEFY_STYLE_HOSODA", str(tmp_path))
    assert styles.default_style(styles.style_states()) == "hosoda"  # the page opens on a style that can run
    panel = styles.styles_panel(styles.style_states())
    assert "`--weights shinkai=PATH`" in panel and "scenimefy download shinkai" in panel  # operator advice here
    assert "<" not in panel


def test_fast_variants_are_an_option_of_their_style(monkeypatch, tmp_path):
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("SCENIMEFY_STYLE_SHINKAI", str(tmp_path))
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI_LITE", raising=False)
    states = styles.style_states()
    assert "shinkai-lite" in states and "shinkai-lite" not in dict(styles.style_choices(states)).values()
    assert styles.fast_style("shinkai", states) is None  # no lite weights: no Fast option
    panel = styles.styles_panel(states)
    assert "(`shinkai-lite`, the fast variant of `shinkai`): not available" in panel
    assert "`--weights shinkai-lite=PATH`" in panel and "_net_G.pth" not in panel.split("shinkai-lite")[-1]
    monkeypatch.setenv("SCENIMEFY_STYLE_SHINKAI_LITE", str(tmp_path))
    states = styles.style_states()
    assert styles.fast_style("shinkai", states) == "shinkai-lite" and styles.fast_style("hosoda", states) is None
    assert "A fast model of it is available" in styles.style_note("shinkai", states)
    assert styles.default_style(states) == "shinkai"
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI")  # a variant alone does not make its style selectable
    states = styles.style_states()
    assert styles.default_style(states) == "shinkai" and not states["shinkai"].runnable
    assert "Makoto Shinkai (fast)" not in styles.unavailable_message("hosoda", states)


# --------------------------------------------------------------------------- image options


def test_output_is_png_and_strength_zero_returns_the_photo(client, tmp_path):
    from gradio_client import handle_file

    src = tmp_path / "g.png"
    Image.fromarray(gradient(80, 60)).save(src)
    out, _ = client.predict(handle_file(str(src)), "shinkai", 0.0, False, 128, api_name="/stylize")
    assert Image.open(out).format == "PNG"
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), gradient(80, 60))


def test_keep_colours_keeps_the_photos_chroma(client, tmp_path):
    from gradio_client import handle_file

    src = tmp_path / "g.png"
    Image.fromarray(gradient(80, 60)).save(src)
    plain = np.asarray(
        Image.open(client.predict(handle_file(str(src)), "shinkai", 1.0, False, 128, api_name="/stylize")[0])
    )
    kept = np.asarray(
        Image.open(client.predict(handle_file(str(src)), "shinkai", 1.0, True, 128, api_name="/stylize")[0])
    )
    chroma = lambda a: np.asarray(Image.fromarray(a[..., :3]).convert("YCbCr"), dtype=float)[..., 1:]  # noqa: E731
    luma = lambda a: np.asarray(Image.fromarray(a[..., :3]).convert("YCbCr"), dtype=float)[..., 0]  # noqa: E731
    assert np.abs(chroma(kept) - chroma(gradient(80, 60))).mean() < 2.0
    assert (
        np.abs(chroma(plain) - chroma(gradient(80, 60))).mean() > np.abs(chroma(kept) - chroma(gradient(80, 60))).mean()
    )
    assert np.abs(luma(kept) - luma(plain)).mean() < 2.0  # the stylized luminance


def test_adjustments_are_exact_at_the_ends():
    from scenimefy.inference.adjust import adjust, blend, keep_colours

    a = gradient(16, 8)
    b = np.full_like(a, 200)
    assert np.array_equal(blend(a, b, 1.0), b) and np.array_equal(blend(a, b, 0.0), a)
    assert np.abs(blend(a, b, 0.5).astype(int) - (a.astype(int) + 200) / 2).max() <= 0.5
    assert np.abs(keep_colours(a, a).astype(int) - a).max() <= 1  # own colours: unchanged
    rgba = np.concatenate([b, np.full(b.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert adjust(a, rgba, 0.5, True).shape == rgba.shape and (adjust(a, rgba, 0.5, True)[..., 3] == 7).all()


def test_bad_inputs_get_messages_not_tracebacks(client, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [
        ((handle_file(str(text)), "shinkai"), "/stylize", "notes.png is not a photo this app can read"),
        ((None, "shinkai"), "/stylize", "Upload a photo first"),
        ((handle_file(str(SAMPLES / "teaser-0.jpg")), "nosuchstyle"), "/stylize", "not in the list of choices"),
        ((handle_file(str(text)), "shinkai"), "/stylize_video", "notes.png cannot be read as a video"),
        ((handle_file(str(empty)), "shinkai"), "/stylize_video", "empty.mp4 is empty (0 bytes)"),
        ((None, "shinkai"), "/stylize_video", "Upload a video first"),
    ]
    for args, endpoint, message in cases:
        with pytest.raises(Exception) as err:
            client.predict(*args, api_name=endpoint)
        text_shown = str(err.value)
        assert message in text_shown, (endpoint, message, text_shown)
        for leak in ("Traceback", "/tmp", "Errno", "Error:"):
            assert leak not in text_shown, (endpoint, text_shown)


# --------------------------------------------------------------------------- video


def test_video_with_sound_through_the_server(client, tmp_path):
    from gradio_client import handle_file

    src = tmp_path / "clip.mp4"
    write_clip(src, moving_square(30, 48, 32), rate=12, audio="aac")  # 2.5 s: the server stylizes at most 2 s
    result, note = client.predict(
        handle_file(str(src)), "shinkai", 1.0, False, "flow", 64, 2, api_name="/stylize_video"
    )
    path = result["video"] if isinstance(result, dict) else result
    assert Path(path).name == "clip-shinkai.mp4"
    assert note.startswith("Done in") and "the first 2.0 s of the 2.5 s clip at 48 x 32 px, 24 frames" in note
    assert "with the clip's sound" in note
    with av.open(path) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        frames = list(c.decode(video=0))
    assert len(frames) == 24 and (frames[0].width, frames[0].height) == (48, 32)


# --------------------------------------------------------------------------- load and limits


@pytest.mark.slow
def test_sixteen_clients_five_requests_each(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    src = tmp_path / "small.png"
    Image.fromarray(gradient(40, 32)).save(src)
    outcomes: list[str] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        # Distinct photos, as distinct users send: identical results would share one cache file.
        photos = []
        for j in range(5):
            pixels = gradient(40, 32)
            pixels[0, 0] = (i, j, 0)
            photos.append(tmp_path / f"u{i}_{j}.png")
            Image.fromarray(pixels).save(photos[-1])
        try:
            client = Client(server, verbose=False, download_files=str(tmp_path / f"dl{i}"))
        except Exception as err:  # pragma: no cover - reported below
            with lock:
                outcomes.extend([f"connect: {err}"] * 5)
            return
        for photo in photos:
            try:
                out, _ = client.predict(handle_file(str(photo)), "shinkai", 1.0, False, 64, api_name="/stylize")
                kind = "answered" if Image.open(out).size == (40, 32) else f"wrong size {Image.open(out).size}"
            except Exception as err:
                queue_full = "queue is full" in str(err).lower() and not isinstance(err, AppError)
                kind = "queue full" if queue_full else f"{type(err).__name__}: {err}"
            with lock:
                outcomes.append(kind)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "requests hung"
    assert len(outcomes) == 80
    unexpected = [o for o in outcomes if o not in ("answered", "queue full")]
    assert not unexpected, unexpected[:5]
    assert outcomes.count("answered") >= 8
    print(
        f"16 clients x 5: {outcomes.count('answered')} answered, {outcomes.count('queue full')} told the queue is full"
    )
    alive, _ = Client(server, verbose=False).predict(handle_file(str(src)), "shinkai", api_name="/stylize")
    assert Image.open(alive).size == (40, 32)


def test_offline_page_loads_and_names_styles_that_cannot_run(monkeypatch, tmp_path):
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI", raising=False)
    monkeypatch.delenv("SCENIMEFY_STYLE_HOSODA", raising=False)
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "walk.mp4", moving_square(4, 48, 32), rate=12, audio="aac")
    demo = webapp.build_demo(examples=[SAMPLES, videos])
    url = serve(demo, max_file_size="1mb")
    try:
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
        config = json.dumps(page_config(url))
        assert "Makoto Shinkai (not available)" in config and "Mamoru Hosoda (not available)" in config
        assert "SCENIMEFY_STYLE_HOSODA" in config  # the Styles panel says how to provide them
        assert "teaser-0.jpg" in config and "walk.mp4" in config  # example photos and clips are offered
        assert page_config(url).get("max_file_size") == 1024**2
    finally:
        demo.close()


def test_examples_come_from_config(monkeypatch, tmp_path):
    monkeypatch.setenv("SCENIMEFY_EXAMPLES", f"{SAMPLES}:{tmp_path}")
    assert media.examples_dirs() == [SAMPLES.resolve(), tmp_path.resolve()]
    assert media.examples_dir(tmp_path) == tmp_path.resolve()
    monkeypatch.delenv("SCENIMEFY_EXAMPLES")
    assert media.examples_dir() is None
    with pytest.raises(SystemExit):
        webapp.parse_args(["--examples", str(tmp_path / "missing")])


def test_weights_flag_takes_style_equals_path(monkeypatch, capsys):
    monkeypatch.setenv("SCENIMEFY_STYLE_HOSODA", "")  # parse_args sets it: restored after the test
    webapp.parse_args(["--weights", "hosoda=/somewhere/hosoda"])
    assert os.environ["SCENIMEFY_STYLE_HOSODA"] == "/somewhere/hosoda"
    for bad, said in (("/somewhere/x.pth", "takes STYLE=PATH, e.g. --weights shinkai="), ("ghibli=x", "not a style")):
        with pytest.raises(SystemExit):
            webapp.parse_args(["--weights", bad])
        assert said in capsys.readouterr().err
