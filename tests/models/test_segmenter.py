import json
import math
import time

import pytest
import torch
import torch.nn.functional as F

from scenimefy.hub.download import WeightsUnavailableError, load_segmenter
from scenimefy.losses.segmentation import keep_pairs, semantic_abundance, semantic_consistency, semantic_scores
from scenimefy.models.segmenter import SemanticSegmenter
from tests.support.tiny_mask2former import tiny_mask2former


@pytest.fixture(scope="module")
def segmenter() -> SemanticSegmenter:
    return SemanticSegmenter(tiny_mask2former())


def images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g) * 2 - 1


def test_score_maps_shape_range_and_dtype(segmenter):
    x = images(2, 40, 56)  # not multiples of 32: padded, then cropped back
    scores = segmenter(x)
    assert scores.shape == (2, 150, 40, 56)
    assert scores.dtype == torch.float32 and scores.device == x.device
    assert scores.min() >= 0 and scores.max() <= segmenter.model.config.num_queries


def test_uint8_and_float_inputs_agree(segmenter):
    u8 = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8)
    as_float = u8.float() / 127.5 - 1
    torch.testing.assert_close(segmenter(u8), segmenter(as_float))


def test_model_dtype_is_the_callers():
    seg = SemanticSegmenter(tiny_mask2former()).to(dtype=torch.bfloat16)
    scores = seg(images(1, 32, 32))
    assert next(seg.model.parameters()).dtype == torch.bfloat16
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()


def test_scores_match_a_direct_computation_from_the_logits(segmenter):
    x = images(2, 64, 64, seed=3)
    pixels, size = segmenter.preprocess(x)
    with torch.no_grad():
        out = segmenter.model(pixel_values=pixels)
    masks = F.interpolate(out.masks_queries_logits, size=(64, 64), mode="bilinear", align_corners=False).sigmoid()
    probs = out.class_queries_logits.softmax(-1)
    expected = torch.zeros(2, 150, 64, 64)
    for q in range(probs.shape[1]):  # sum over queries of p(class | q) * mask_q, null class left out
        expected += probs[:, q, :150, None, None] * masks[:, q, None]
    torch.testing.assert_close(segmenter(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(semantic_scores(out.class_queries_logits, out.masks_queries_logits, (64, 64)), expected)


def test_scores_match_transformers_post_processing(segmenter):
    from transformers import Mask2FormerImageProcessor

    # transformers upsamples the masks to 384x384 before scoring; at a 384 input both agree.
    x = images(1, 384, 384, seed=4)
    pixels, _ = segmenter.preprocess(x)
    with torch.no_grad():
        out = segmenter.model(pixel_values=pixels)
    ref = Mask2FormerImageProcessor().post_process_semantic_segmentation(
        out, target_sizes=[(384, 384)], return_segmentation_scores=True
    )[0]
    torch.testing.assert_close(segmenter(x)[0], ref["segmentation_scores"])


def test_shortest_edge_resize_returns_maps_at_the_image_size():
    seg = SemanticSegmenter(tiny_mask2former(), shortest_edge=64)
    pixels, size = seg.preprocess(images(1, 48, 80))
    assert size == (64, 107) and pixels.shape[-2:] == (64, 128)
    assert seg(images(1, 48, 80)).shape == (1, 150, 48, 80)


def test_lbce_equals_the_closed_form_cross_entropy():
    anime = torch.tensor([[[[0.9, 0.1]], [[0.1, 0.2]], [[0.0, 0.7]]]])  # (1, C=3, 1, 2)
    real = torch.tensor([[[[0.2, 0.1]], [[0.7, 0.3]], [[0.1, 0.6]]]])  # labels: class 1, class 2

    def ce(logits, label):
        return -logits[label] + math.log(sum(math.exp(v) for v in logits))

    expected = (ce([0.9, 0.1, 0.0], 1) + ce([0.1, 0.2, 0.7], 2)) / 2
    assert semantic_consistency(anime, real).item() == pytest.approx(expected, rel=1e-6)
    assert semantic_consistency(real, real).item() < semantic_consistency(anime, real).item()


def test_lbce_sits_just_under_ln_150_for_score_maps():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 150, 8, 8, generator=g).softmax(1)  # like Mask2Former: values in [0, 1]
    lbce = semantic_consistency(real, real)
    assert lbce.shape == (3,)
    assert ((lbce < math.log(150)) & (lbce > math.log(150) - 1)).all()


def test_abundance_counts_distinct_argmax_classes():
    scores = torch.zeros(2, 5, 2, 2)
    scores[0, 3] = 1.0  # one class everywhere
    scores[1, 0, 0, 0] = scores[1, 2, 0, 1] = scores[1, 4, 1, :] = 1.0
    scores[1, 1, 1, 1] = 2.0  # class 1 wins one pixel over class 4
    assert semantic_abundance(scores).tolist() == [1, 4]


def test_criteria_accept_and_reject_the_right_pairs():
    lbce = torch.tensor([4.2, 4.99, 5.0, 5.3, 4.5])
    classes = torch.tensor([3, 2, 6, 4, 1])
    assert keep_pairs(lbce, classes).tolist() == [True, True, False, False, False]
    assert keep_pairs(lbce, classes, max_lbce=5.5, min_classes=0).tolist() == [True] * 5
    assert keep_pairs(lbce, classes, max_lbce=4.6, min_classes=2).tolist() == [True, False, False, False, False]


def test_score_pairs_matches_the_separate_computation(segmenter):
    anime, real = images(2, 32, 32, seed=5), images(2, 32, 32, seed=6)
    lbce, classes = segmenter.score_pairs(anime, real)
    torch.testing.assert_close(lbce, semantic_consistency(segmenter(anime), segmenter(real)))
    assert classes.tolist() == semantic_abundance(segmenter(real)).tolist()


def test_from_pretrained_local_folder_round_trip(tmp_path, segmenter):
    segmenter.model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    loaded = SemanticSegmenter.from_pretrained(tmp_path)
    assert loaded.image_mean == (0.5, 0.5, 0.5) and loaded.size_divisor == 32
    x = images(1, 32, 32)
    plain = SemanticSegmenter(loaded.model, image_mean=segmenter.image_mean, image_std=segmenter.image_std)
    torch.testing.assert_close(plain(x), segmenter(x))


@pytest.mark.parametrize("name", ["scenimefy-tests/no-such-mask2former", "./no/such/folder"])
def test_missing_weights_fail_fast_with_advice(name):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="local folder"):
        load_segmenter(name)
    assert time.monotonic() - start < 5
