"""The anime dataset builder on generated films whose frames carry their own numbers."""

import json
import time

import av
import numpy as np
import pytest

from scenimefy.cli import main
from scenimefy.data.anime import AnimeDatasetError, build_anime_dataset, match_films, read_frame_list, read_frames
from scenimefy.hub.cards import render

BITS = 8  # frame numbers up to 255


def frame_image(n: int, width: int, height: int) -> np.ndarray:
    """A horizontal grey ramp (tells a crop's x offset) with n in 8 black/white bars drawn in the
    columns every crop shares, bars tall enough to survive H.264."""
    ramp = np.round(np.arange(width) * 255 / (width - 1)).astype(np.uint8)
    img = np.repeat(np.repeat(ramp[None, :, None], height, 0), 3, 2)
    bit_h = height // (BITS + 1)
    x0, x1 = width - height + 4, height - 4  # inside the overlap of the left and right crops
    for k in range(BITS):
        img[k * bit_h : (k + 1) * bit_h, x0:x1] = 235 if (n >> k) & 1 else 16
    return img


def decode_number(crop: np.ndarray, width: int, height: int) -> tuple[int, float]:
    """(frame number, x offset) read back from a square crop (any size)."""
    scale = crop.shape[0] / height
    bit_h = height // (BITS + 1)
    grey = crop.astype(float).mean(axis=2)
    x_offset = grey[int(BITS * bit_h * scale) + 2 :, 0].mean() * (width - 1) / 255  # the ramp's first column
    xc = int((width / 2 - x_offset) * scale)  # the bars' centre column in this crop
    n = 0
    for k in range(BITS):
        yc = int((k + 0.5) * bit_h * scale)
        if grey[yc - 2 : yc + 3, xc - 2 : xc + 3].mean() > 128:
            n |= 1 << k
    return n, x_offset


def write_film(path, frames: int, width: int, height: int, fps: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 12  # several keyframes: the reader must seek, not just decode on
        for n in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(n, width, height), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


# Film A: 192x108 mp4 at 24 fps (the 1920x1080 case at 1/10 scale); film B: 176x104 mkv at 25 fps
# (a frame of another height: its crops are resized to 108, like 1072 -> 1080).
FILMS = {"Your Name": ("your_name.mp4", 100, 192, 108, 24), "Someone's Gaze": ("Someones Gaze.mkv", 80, 176, 104, 25)}
LIST = {"Your Name": [97, 0, 3, 4, 50, 51, 99, 130], "Someones Gaze": [1, 10, 40, 79]}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    root = tmp_path_factory.mktemp("films")
    for name, frames, w, h, fps in FILMS.values():
        write_film(root / name, frames, w, h, fps)
    (root / "notes.txt").write_text("not a film")
    frame_list = root.parent / "frameList.json"
    frame_list.write_text(json.dumps(LIST))
    return root, frame_list


def test_the_test_pattern_survives_h264(films):
    root, _ = films
    for n, rgb in read_frames(root / "your_name.mp4", [0, 37, 99]):
        assert decode_number(rgb[:, :108], 192, 108)[0] == n


@pytest.mark.parametrize("sequential", [False, True])
def test_reader_returns_exactly_the_listed_frames(films, sequential):
    root, _ = films
    wanted = [97, 0, 3, 4, 50, 51, 99, 130, 51]
    got = list(read_frames(root / "your_name.mp4", wanted, sequential=sequential))
    assert [n for n, _ in got] == [0, 3, 4, 50, 51, 97, 99, 130]
    for n, rgb in got[:-1]:
        assert rgb.shape == (108, 192, 3) and decode_number(rgb[:, :108], 192, 108)[0] == n
    assert got[-1][1] is None  # past the end


def test_seeking_agrees_with_counting_every_frame(films):
    root, _ = films
    wanted = [0, 2, 30, 31, 78, 79]
    seek = list(read_frames(root / "Someones Gaze.mkv", wanted))
    count = list(read_frames(root / "Someones Gaze.mkv", wanted, sequential=True))
    for (a, x), (b, y) in zip(seek, count):
        assert a == b
        np.testing.assert_array_equal(x, y)


def test_dataset_has_the_listed_frames_cropped_and_loads_with_datasets(films, tmp_path):
    root, frame_list = films
    out = tmp_path / "anime"
    report = build_anime_dataset(frame_list, root, out, size=108, progress=False, render_card=render)
    assert report.missing_frames == {"Your Name": [130]} and report.missing_films == []
    assert report.decoded_frames == 11 and report.images == 33

    import datasets

    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-datasets"))
    assert len(ds) == 33
    assert {"image", "film", "frame", "crop", "crop_index", "x", "source_width", "source_height"} <= set(
        ds.column_names
    )
    seen = {}
    for row in ds:
        title = "Your Name" if row["film"] == "Your Name" else "Someone's Gaze"
        _, frames, w, h, _ = FILMS[title]
        image = np.asarray(row["image"].convert("RGB"))
        assert image.shape == (108, 108, 3)
        number, x_offset = decode_number(image, w, h)
        assert number == row["frame"]
        expected_x = {"left": 0, "centre": (w - h) // 2, "right": w - h}[row["crop"]]
        assert row["x"] == expected_x and abs(x_offset - expected_x) < 3
        seen.setdefault(row["film"], set()).add((row["frame"], row["crop"]))
    assert seen["Your Name"] == {(n, c) for n in (0, 3, 4, 50, 51, 97, 99) for c in ("left", "centre", "right")}
    assert seen["Someones Gaze"] == {(n, c) for n in (1, 10, 40, 79) for c in ("left", "centre", "right")}
    card = (out / "README.md").read_text()
    assert "do not redistribute" in card and "scenimefy_redistributable: false" in card
    assert card.startswith("---\nlicense: other\nlicense_name: film-frames-personal-research-use\n")
    assert card.count("@inproceedings{jiang2023scenimefy") == 1  # the one card writer's citation


def test_resume_decodes_only_what_is_missing(films, tmp_path):
    root, frame_list = films
    out = tmp_path / "anime"
    build_anime_dataset(frame_list, root, out, size=108, progress=False, render_card=render)
    crop = out / "train" / "your-name" / "frame_000050_1.png"
    stamp = (out / "train" / "your-name" / "frame_000000_0.png").stat().st_mtime_ns
    crop.unlink()
    report = build_anime_dataset(frame_list, root, out, size=108, progress=False, render_card=render)
    assert report.decoded_frames == 1 and report.skipped_frames == 10 and report.images == 33
    assert crop.is_file() and (out / "train" / "your-name" / "frame_000000_0.png").stat().st_mtime_ns == stamp
    assert not list(out.rglob("*.part"))


def test_unmatched_titles_are_listed(films, tmp_path):
    root, _ = films
    frames = {"Your Name": [0], "Weathering with You": [5], "A Gathering of Cats": [0]}
    with pytest.raises(AnimeDatasetError) as err:
        build_anime_dataset(frames, root, tmp_path / "x", size=108, progress=False, render_card=render)
    message = str(err.value)
    assert "'Weathering with You'" in message and "'A Gathering of Cats'" in message and "your_name.mp4" in message
    report = build_anime_dataset(
        frames, root, tmp_path / "x", size=108, allow_missing_films=True, progress=False, render_card=render
    )
    assert report.missing_films == ["Weathering with You", "A Gathering of Cats"] and report.images == 3
    found, missing = match_films(["YOUR NAME", "Someones  gaze!"], root)
    assert set(found) == {"YOUR NAME", "Someones  gaze!"} and not missing


def test_frame_list_validation(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"Film": [1, -2]}')
    with pytest.raises(AnimeDatasetError, match="non-negative"):
        read_frame_list(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(AnimeDatasetError, match="JSON object"):
        read_frame_list(bad)
    good = tmp_path / "good.json"
    good.write_text('{"Film": [20, 10, 20]}')
    assert read_frame_list(good) == {"Film": [10, 20]}


def test_cli_dataset_anime(films, tmp_path, capsys):
    root, frame_list = films
    start = time.monotonic()
    rc = main(
        [
            "dataset",
            "anime",
            "--frame-list",
            str(frame_list),
            "--films",
            str(root),
            "-o",
            str(tmp_path / "a"),
            "--size",
            "108",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1, captured.err  # one listed frame is past the end of its film
    assert "33 images" in captured.out and "Your Name: 1 frame(s) past the end" in captured.err
    rc = main(
        [
            "dataset",
            "anime",
            "--frame-list",
            str(frame_list),
            "--films",
            str(tmp_path / "nowhere"),
            "-o",
            str(tmp_path / "b"),
        ]
    )
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    assert time.monotonic() - start < 30
