import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.cli import main
from scenimefy.evaluation.lbce import evaluate_lbce, pair_files
from scenimefy.losses.segmentation import semantic_consistency
from scenimefy.models.segmenter import SemanticSegmenter
from tests.support.tiny_mask2former import tiny_mask2former


def write(path, seed, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


@pytest.fixture
def folders(tmp_path):
    real, fake = tmp_path / "photos", tmp_path / "translated"
    arrays = {
        "a": (write(real / "a.jpg", 0), write(fake / "a.png", 1)),
        "sub/b": (write(real / "sub" / "b.png", 2), write(fake / "sub" / "b.png", 3)),
        "c": (write(real / "c.png", 4, (96, 64)), write(fake / "c.webp", 5, (96, 64))),
    }
    write(real / "only_real.png", 6)
    write(fake / "only_fake.png", 7)
    return real, fake, arrays


@pytest.fixture(scope="module")
def segmenter():
    return SemanticSegmenter(tiny_mask2former())


def test_pairs_are_matched_by_relative_name(folders):
    real, fake, _ = folders
    pairs, missing, extra = pair_files(real, fake)
    assert [key for key, _, _ in pairs] == ["a", "c", "sub/b"]
    assert missing == ["only_real"] and extra == ["only_fake"]


def test_duplicate_names_are_refused(folders):
    real, fake, _ = folders
    write(fake / "a.jpg", 8)
    with pytest.raises(ValueError, match="share the name"):
        pair_files(real, fake)


def decoded(path):  # JPEG and WebP are lossy: compare against what the files decode to
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None]


def test_mean_lbce_equals_the_per_pair_computation(folders, segmenter):
    real, fake, _ = folders
    result = evaluate_lbce(real, fake, segmenter, batch_size=2, progress=False)
    expected = {}
    for key, photo, translation in pair_files(real, fake)[0]:
        expected[key] = semantic_consistency(segmenter(decoded(translation)), segmenter(decoded(photo))).item()
    assert result.per_image == pytest.approx(expected, rel=1e-5)
    assert result.mean == pytest.approx(np.mean(list(expected.values())), rel=1e-6)


def test_cli_evaluate_lbce(folders, tmp_path, capsys):
    real, fake, _ = folders
    weights = tmp_path / "m2f"
    tiny_mask2former().save_pretrained(weights)
    out = tmp_path / "lbce.json"
    rc = main(["evaluate", "--metric", "lbce", str(real), str(fake), "--segmenter", str(weights), "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(out.read_text())
    assert sorted(report["per_image"]) == ["a", "c", "sub/b"]
    assert f"{report['mean']:.4f} over 3 pairs" in captured.out
    assert "1 photos without a translation" in captured.err


def test_cli_evaluate_without_weights_fails_fast(folders, capsys):
    real, fake, _ = folders
    start = time.monotonic()
    rc = main(["evaluate", "--metric", "lbce", str(real), str(fake), "--segmenter", "scenimefy-tests/missing-m2f"])
    assert rc == 2 and time.monotonic() - start < 5
    assert "local folder" in capsys.readouterr().err


def test_translations_of_another_size_are_resized_to_the_photo(tmp_path, segmenter):
    write(tmp_path / "real" / "x.png", 0)
    small = write(tmp_path / "fake" / "x.png", 1, (60, 60))
    (tmp_path / "fake64").mkdir()
    Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(tmp_path / "fake64" / "x.png")
    resized = evaluate_lbce(tmp_path / "real", tmp_path / "fake", segmenter, progress=False).mean
    by_hand = evaluate_lbce(tmp_path / "real", tmp_path / "fake64", segmenter, progress=False).mean
    assert resized == pytest.approx(by_hand)
