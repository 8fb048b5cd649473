"""PatchNCE / StylePatchNCE / SRC / hDCE: parity with the reference vectors and closed-form checks."""

import math

import numpy as np
import pytest
import torch

from scenimefy.losses.contrastive import (
    MASKED_SIMILARITY,
    hard_negative_contrastive_loss,
    hdce_gamma,
    patch_nce_loss,
    relation_weights,
    semantic_relation_consistency,
    style_patch_nce_loss,
)
from tests.support.paths import PARITY

RTOL = 1e-5


@pytest.fixture(scope="module")
def vectors(shared):
    data = np.load(PARITY / "losses.npz")
    return {k: data[k] for k in data.files}


def _qk(vectors):
    return torch.from_numpy(vectors["feat_q"])[None], torch.from_numpy(vectors["feat_k"])[None]


def _gamma(vectors):
    return hdce_gamma(
        int(vectors["epoch"]),
        int(vectors["total_epochs"]),
        float(vectors["hdce_gamma"]),
        float(vectors["hdce_gamma_min"]),
    )


# ---------------------------------------------------------------------------- parity


def test_patchnce_parity(vectors):
    q, k = _qk(vectors)
    value = patch_nce_loss(q, k, temperature=float(vectors["nce_T"])).item()
    assert value == pytest.approx(float(vectors["patchnce"]), rel=RTOL)


def test_src_value_and_relation_weights_parity(vectors):
    q, k = _qk(vectors)
    loss, weights = semantic_relation_consistency(q, k, gamma=_gamma(vectors))
    assert loss.item() == pytest.approx(float(vectors["src"]), rel=RTOL)
    expected = torch.from_numpy(vectors["src_weight"])
    assert weights.shape == expected.shape
    torch.testing.assert_close(weights, expected, rtol=RTOL, atol=1e-6)


def test_hdce_weighted_and_unweighted_parity(vectors):
    q, k = _qk(vectors)
    _, weights = semantic_relation_consistency(q, k, gamma=_gamma(vectors))
    t = float(vectors["nce_T"])
    weighted = hard_negative_contrastive_loss(q, k, weights, temperature=t).item()
    unweighted = hard_negative_contrastive_loss(q, k, None, temperature=t).item()
    assert weighted == pytest.approx(float(vectors["hdce_weighted"]), rel=RTOL)
    assert unweighted == pytest.approx(float(vectors["hdce_unweighted"]), rel=RTOL)


def test_gamma_curriculum_matches_reference_epoch(vectors):
    # gamma 50 -> 10 over 20 epochs, evaluated at the reference's epoch 7
    assert _gamma(vectors) == pytest.approx(36.0)
    assert hdce_gamma(0, 20) == 50.0 and hdce_gamma(20, 20) == pytest.approx(10.0)
    assert hdce_gamma(10, 20) == pytest.approx(30.0)


# ---------------------------------------------------------------------------- closed forms


def test_patchnce_orthogonal_features_closed_form():
    # Queries equal keys, all orthogonal: positive logit 1/tau, every negative 0, masked diagonal -10/tau.
    # (tau 0.5 keeps the value far above float32 rounding; the formula holds for any tau.)
    p, tau = 4, 0.5
    feats = torch.eye(p)[None]
    expected = math.log(1 + (p - 1) * math.exp(-1 / tau) + math.exp((MASKED_SIMILARITY - 1) / tau))
    assert patch_nce_loss(feats, feats, tau).item() == pytest.approx(expected, rel=1e-6)


def test_patchnce_chance_level_when_queries_ignore_keys():
    # Queries orthogonal to every key: all logits 0 except the masked diagonal -> log(P) (P candidates).
    p = 4
    keys = torch.eye(8)[:p][None]
    queries = torch.eye(8)[p:][None]
    expected = math.log(p - 1 + 1 + math.exp(MASKED_SIMILARITY / 0.07))  # positive + P-1 negatives + masked
    assert patch_nce_loss(queries, keys).item() == pytest.approx(expected, rel=1e-6)


def test_patchnce_batch_is_mean_of_images_and_keys_get_no_gradient():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1).requires_grad_()
    k = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1).requires_grad_()
    both = patch_nce_loss(q, k)
    separate = (patch_nce_loss(q[:1], k[:1]) + patch_nce_loss(q[1:], k[1:])) / 2
    assert both.item() == pytest.approx(separate.item(), rel=1e-6)
    both.backward()
    assert q.grad is not None and k.grad is None


def test_style_patchnce_averages_layers():
    torch.manual_seed(1)
    qs = [torch.nn.functional.normalize(torch.randn(1, 8, 4), dim=-1) for _ in range(3)]
    ks = [torch.nn.functional.normalize(torch.randn(1, 8, 4), dim=-1) for _ in range(3)]
    expected = sum(patch_nce_loss(q, k).item() for q, k in zip(qs, ks)) / 3
    assert style_patch_nce_loss(qs, ks).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        style_patch_nce_loss(qs, ks[:2])


def test_src_zero_for_identical_relations_and_positive_otherwise():
    torch.manual_seed(2)
    k = torch.nn.functional.normalize(torch.randn(1, 32, 16), dim=-1)
    loss, weights = semantic_relation_consistency(k.clone(), k, gamma=10.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    q = torch.nn.functional.normalize(torch.randn(1, 32, 16), dim=-1)
    assert semantic_relation_consistency(q, k, gamma=10.0)[0].item() > 0
    # relation weights: each row's largest weight is 1, all in (0, 1]
    assert torch.allclose(weights.amax(-1), torch.ones(1, 32))
    assert (weights > 0).all() and (weights <= 1).all()


def test_src_closed_form_two_patches():
    # Two orthogonal key patches, two identical query patches: relation rows
    # p_k = softmax([1, 0]), p_q = softmax([1, 1]) = [.5, .5] (for both rows, mirrored).
    keys = torch.eye(2)[None]
    queries = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    pk = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    pq = torch.tensor([0.5, 0.5])
    m = (pk + pq) / 2
    jsd = 0.5 * ((pk * (pk / m).log()).sum() + (pq * (pq / m).log()).sum())
    loss, _ = semantic_relation_consistency(queries, keys, gamma=1.0)
    assert loss.item() == pytest.approx(2 * jsd.item(), rel=1e-6)


def test_relation_weights_closed_form():
    # Orthogonal keys: off-diagonal similarity 0 -> exp(0), diagonal -10 -> exp(-10/gamma); max-scaled.
    gamma = 50.0
    w = relation_weights(torch.eye(3)[None], gamma)
    assert torch.allclose(w[0].diagonal(), torch.full((3,), math.exp(MASKED_SIMILARITY / gamma)))
    assert torch.allclose(w[0][~torch.eye(3, dtype=torch.bool)], torch.ones(6))


def test_hdce_value_is_patchnce_and_gradient_is_decoupled():
    torch.manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1).requires_grad_()
    k = torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1)
    loss = hard_negative_contrastive_loss(q, k, None, 0.07)
    assert loss.item() == pytest.approx(patch_nce_loss(q, k, 0.07).item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, q)
    # the decoupled objective, written out: mean_i logsumexp_{j != i}((q_i.k_j - q_i.k_i) / tau)
    q2 = q.detach().clone().requires_grad_()
    sim = q2[0] @ k[0].T
    neg = sim.masked_fill(torch.eye(16, dtype=torch.bool), MASKED_SIMILARITY)
    dce = torch.logsumexp((neg - sim.diagonal()[:, None]) / 0.07, dim=-1).mean()
    (expected,) = torch.autograd.grad(dce, q2)
    torch.testing.assert_close(grad, expected)


def test_hdce_weights_change_the_loss():
    torch.manual_seed(4)
    q = torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1)
    halved = hard_negative_contrastive_loss(q, k, torch.full((1, 16, 16), 0.5)).item()
    assert halved != pytest.approx(hard_negative_contrastive_loss(q, k).item())


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="batch, patches, dim"):
        patch_nce_loss(torch.zeros(4, 8), torch.zeros(4, 8))
    with pytest.raises(ValueError, match="batch, patches, dim"):
        semantic_relation_consistency(torch.zeros(1, 4, 8), torch.zeros(1, 5, 8), 10.0)
