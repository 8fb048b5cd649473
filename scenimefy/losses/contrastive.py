"""Patch-wise contrastive losses of the translator (paper 3.3; SRC and hDCE from Jung et al. 2022).

Every function takes the embedded patches of one layer as ``(B, P, D)`` tensors: B images, P
patches per image (the same patch ids on both sides), D-dim L2-normalised embeddings (the output
of :class:`~scenimefy.models.PatchSampler`). ``queries`` come from the translated image, ``keys``
from the image it should correspond to. Keys are constants (detached), as in CUT: gradients reach
the generator and the patch heads through the queries only. Negatives are the other patches of
the same image, never patches of other images in the batch.
"""

from __future__ import annotations

import torch

# The reference fills the self-similarity diagonal with this value instead of -inf. For the
# contrastive losses it is negligible (exp(-10/0.07)), but the SRC relation weights softmax it at
# temperature gamma (exp(-10/50) is not small), so it is part of the definition.
MASKED_SIMILARITY = -10.0


def _check_patches(queries: torch.Tensor, keys: torch.Tensor) -> None:
    if queries.ndim != 3 or queries.shape != keys.shape:
        raise ValueError(
            f"queries and keys must both be (batch, patches, dim) of one shape, got {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )


def _mask_diagonal(similarity: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(similarity.shape[-1], dtype=torch.bool, device=similarity.device)
    return similarity.masked_fill(eye, MASKED_SIMILARITY)


def _positive_and_negative_logits(queries, keys, relation_weights=None):
    """(B, P, 1) query-key similarity at the same position, (B, P, P) against every other position."""
    positive = (queries * keys).sum(dim=-1, keepdim=True)
    negative = queries @ keys.transpose(1, 2)
    if relation_weights is not None:
        negative = negative * relation_weights
    return positive, _mask_diagonal(negative)


def patch_nce_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Mean PatchNCE over all patches: each query must pick its own key among the image's keys."""
    _check_patches(queries, keys)
    positive, negative = _positive_and_negative_logits(queries, keys.detach())
    logits = torch.cat([positive, negative], dim=-1) / temperature
    # Eq. 2: L_patch = -log(exp(v~.v+/tau) / (exp(v~.v+/tau) + sum_j exp(v~.v-_j/tau)))
    return (torch.logsumexp(logits, dim=-1) - logits[..., 0]).mean()


def style_patch_nce_loss(
    queries: list[torch.Tensor], keys: list[torch.Tensor], temperature: float = 0.07
) -> torch.Tensor:
    """StylePatchNCE: PatchNCE between G(x_p) (queries) and the pseudo target y_p (keys), per layer.

    Averaged over the L layers (the paper's sum divided by L, as the reference does).
    """
    if len(queries) != len(keys) or not queries:
        raise ValueError("style_patch_nce_loss needs one (queries, keys) pair per layer")
    # Eq. 5: L_StylePatchNCE = sum_l sum_{i != j} L_patch^style(v~_l^i, v_l^i, v_l^j)
    return torch.stack([patch_nce_loss(q, k, temperature) for q, k in zip(queries, keys)]).mean()


def hdce_gamma(epoch: float, total_epochs: int, gamma_start: float = 50.0, gamma_end: float = 10.0) -> float:
    """hDCE's relation temperature, annealed linearly from ``gamma_start`` towards ``gamma_end``.

    Curriculum of Jung et al.: a falling gamma sharpens the relation weights, so the hardest
    negatives (the patches most similar to the positive) weigh more as training goes on.
    ``epoch`` counts from 1, as the reference passes it; ``epoch == total_epochs`` gives ``gamma_end``.
    """
    return gamma_start + (gamma_end - gamma_start) * epoch / total_epochs


def relation_weights(keys: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, P, P) weights of the negatives for hDCE: softmax(sim(k_i, k_j) / gamma) over j, max-scaled to 1."""
    similarity = _mask_diagonal(keys @ keys.transpose(1, 2))
    weights = torch.softmax(similarity / gamma, dim=-1)
    return (weights / weights.amax(dim=-1, keepdim=True)).detach()


def _jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of distributions along the last dim, summed over it -> (...)."""
    m = 0.5 * (p + q)
    return 0.5 * ((p * (p.log() - m.log())).sum(-1) + (q * (q.log() - m.log())).sum(-1))


def semantic_relation_consistency(
    queries: torch.Tensor, keys: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SRC loss and the relation weights it hands to hDCE.

    For every patch i of an image, softmax over j of the patch similarities <v_i, v_j> is a
    distribution of "what i resembles". SRC is the Jensen-Shannon divergence between those
    distributions in the source (keys, constant) and the translation (queries), summed over the P
    patches and averaged over the batch (the reference sums; it only runs at batch 1).

    Returns ``(loss, weights)`` with weights (B, P, P) from :func:`relation_weights` of the keys.
    """
    _check_patches(queries, keys)
    keys = keys.detach()
    relation_q = torch.softmax(queries @ queries.transpose(1, 2), dim=-1)
    relation_k = torch.softmax(keys @ keys.transpose(1, 2), dim=-1)
    # Jung et al. Eq. 3: L_SRC = sum_i JSD(p_i(x) || p_i(G(x))), p_i = softmax_j <v_i, v_j>
    loss = _jensen_shannon(relation_q, relation_k).sum(-1).mean()
    return loss, relation_weights(keys, gamma)


def hard_negative_contrastive_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    weights: torch.Tensor | None = None,
    temperature: float = 0.07,
) -> torch.Tensor:
    """hDCE: decoupled contrastive loss with negatives re-weighted by the SRC relation weights.

    Gradient: that of the decoupled loss mean_i logsumexp_j((w_ij <q_i, k_j> - <q_i, k_i>) / tau),
    whose denominator leaves the positive out (DCE). Value: the (weighted) PatchNCE
    cross-entropy, as the reference reports it; the two differ only by a constant per step.
    ``weights=None`` gives unweighted DCE.
    """
    _check_patches(queries, keys)
    positive, negative = _positive_and_negative_logits(queries, keys.detach(), weights)
    # Jung et al. Eq. 4: L_hDCE = log sum_{j != i} exp((w_ij q_i.k_j - q_i.k_i) / tau), positive decoupled
    decoupled = torch.logsumexp((negative - positive) / temperature, dim=-1).mean()
    logits = torch.cat([positive, negative], dim=-1) / temperature
    cross_entropy = (torch.logsumexp(logits, dim=-1) - logits[..., 0]).mean()
    return cross_entropy.detach() + (decoupled - decoupled.detach())
