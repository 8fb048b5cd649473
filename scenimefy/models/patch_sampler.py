"""Patch-sampling heads of the contrastive losses (F and F_s in the paper, CUT's ``PatchSampleF``).

For each encoder tap l, ``num_patches`` spatial positions are drawn; the feature vector at each
position goes through a per-layer MLP (Linear -> ReLU -> Linear to ``embed_dim``) and is
L2-normalised. The positions are drawn by :meth:`PatchSampler.sample_patch_ids` and passed to
``forward`` explicitly, so the SAME positions can be embedded for the other image of a pair
(query and key patches must correspond). One set of positions per layer is shared by the batch.

The heads are built in ``__init__`` from the tap channel counts (see :func:`encoder_tap_channels`),
not at the first batch as in the reference's ``data_dependent_initialize``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from scenimefy.models.translator import NCE_LAYERS, ScenimefyTranslator


def encoder_tap_channels(translator_config: Mapping[str, Any], layers: Sequence[int] = NCE_LAYERS) -> list[int]:
    """Channel count of each encoder tap ``layers`` of a translator with ``translator_config``.

    Runs ``encode`` on the meta device: shapes only, no memory and no arithmetic, and always in
    step with the translator's real layout.
    """
    with torch.device("meta"):
        probe = ScenimefyTranslator.from_config(dict(translator_config))
        taps = probe.encode(torch.empty(1, probe.config.in_channels, 16, 16), layers)
    return [int(t.shape[1]) for t in taps]


class PatchSampler(ModelMixin, ConfigMixin):
    """Embeds sampled feature-map positions of several layers as unit vectors.

    Args:
        in_channels: channels of each encoder tap, in tap order.
        embed_dim: width of both MLP layers and of the embedding (reference ``netF_nc`` 256).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: Sequence[int] = (3, 128, 256, 256, 256), embed_dim: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim)) for c in in_channels
        )

    @staticmethod
    def sample_patch_ids(
        feats: Sequence[torch.Tensor], num_patches: int = 256, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Per layer, ``min(num_patches, H*W)`` distinct flat positions drawn uniformly, shared by the batch."""
        ids = []
        for feat in feats:
            n_positions = feat.shape[2] * feat.shape[3]
            perm = torch.randperm(n_positions, generator=generator, device=generator.device if generator else "cpu")
            ids.append(perm[:num_patches].to(feat.device))
        return ids

    def forward(self, feats: Sequence[torch.Tensor], patch_ids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Feature maps (B, C_l, H_l, W_l) + positions (P_l,) -> embeddings (B, P_l, embed_dim), unit norm."""
        if len(feats) != len(self.mlps) or len(patch_ids) != len(self.mlps):
            raise ValueError(
                f"expected {len(self.mlps)} feature maps and patch id sets, got {len(feats)} and {len(patch_ids)}"
            )
        out = []
        for feat, ids, mlp in zip(feats, patch_ids, self.mlps):
            patches = feat.flatten(2).transpose(1, 2)[:, ids]  # (B, P, C)
            out.append(F.normalize(mlp(patches), dim=-1, eps=1e-7))
        return out
