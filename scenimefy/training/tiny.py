"""Tiny, randomly initialised stand-ins for the frozen networks of training, for offline smoke runs.

The ``*-tiny.yaml`` presets (docs/quickstart-training.md) name them with the value ``tiny``:

- ``clip_model: tiny`` (fine-tuning, with ``random_priors: true``): an open_clip ViT of 16 px input,
  one layer of width 32, from ``assets/open_clip-tiny.json``;
- ``segmenter: tiny`` (pair generation): a Mask2Former with a 16-channel Swin backbone, 8 queries
  and the 150 ADE20K labels, from ``assets/mask2former-tiny.json``, seeded, so a run is repeatable.

Random weights measure nothing: a random segmenter scores every pair L_BCE ≈ ln 150 ≈ 5.01, above
the paper's threshold 5.0, so the tiny preset raises ``max_lbce``.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY = "tiny"
ASSETS = Path(__file__).with_name("assets")
TINY_CLIP_CONFIG = ASSETS / "open_clip-tiny.json"
TINY_MASK2FORMER_CONFIG = ASSETS / "mask2former-tiny.json"
#: L_BCE of any pair under a randomly initialised segmenter sits just above ln(150) ~ 5.0106.
RANDOM_SEGMENTER_LBCE = 5.02


def clip_model_name(name: str) -> str:
    """``"tiny"`` -> the shipped open_clip config file; any other name unchanged."""
    return str(TINY_CLIP_CONFIG) if name == TINY else name


def tiny_segmenter(seed: int = 0, shortest_edge: int | None = None):
    """A randomly initialised tiny Mask2Former (:class:`SemanticSegmenter`), the same for a seed."""
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    from scenimefy.models.segmenter import SemanticSegmenter

    values = json.loads(TINY_MASK2FORMER_CONFIG.read_text())
    labels = values.pop("num_labels")
    config = Mask2FormerConfig(
        **values,
        id2label={i: f"class{i}" for i in range(labels)},
        label2id={f"class{i}": i for i in range(labels)},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Mask2FormerForUniversalSegmentation(config)
    return SemanticSegmenter(model.eval(), shortest_edge=shortest_edge)
