"""Tiny, randomly initialised stand-ins for the frozen networks of training, for offline smoke runs.

The ``*-tiny.yaml`` presets (docs/quickstart-training.md) name them with the value ``tiny``:

- ``clip_model: tiny`` (fine-tuning, with ``random_priors: true``): an open_clip ViT of 16 px input,
  one layer of width 32, from ``assets/open_clip-tiny.json``;
- ``segmenter: tiny`` (pair generation): a Mask2Former with a 16-channel Swin backbone, 8 queries
  and the 150 ADE20K labels, from ``assets/mask2former-tiny.json``, seeded, so a run is repeatable;
- ``model: tiny`` / ``controlnet: tiny`` (diffusion pairs): a Stable Diffusion 1.x of 4/8-channel
  UNet, VAE and ControlNet, a one-layer CLIP text encoder and a byte-level CLIP tokenizer with no
  merges, from ``assets/stable-diffusion-tiny.json``, written as diffusers folders by
  :func:`save_tiny_stable_diffusion` and loaded by ``from_pretrained`` like any real checkpoint.

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
TINY_STABLE_DIFFUSION_CONFIG = ASSETS / "stable-diffusion-tiny.json"
#: Stable Diffusion 1.5's layout (UNet, VAE, ControlNet, CLIP ViT-L text encoder) for timing runs
#: with random weights where the real ones cannot be downloaded (benchmarks/gpu_check.py).
SD15_LAYOUT_CONFIG = ASSETS / "stable-diffusion-1.5-layout.json"
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


def tiny_clip_tokenizer(layout: Path = TINY_STABLE_DIFFUSION_CONFIG):
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols (alone and word-final) and the two
    special tokens, with no merges: every word is spelled out byte by byte, which is all a random
    text encoder needs, and nothing has to be downloaded."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate([*symbols, *(s + "</w>" for s in symbols)])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    positions = json.loads(Path(layout).read_text())["text_encoder"]["max_position_embeddings"]
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=positions)  # byte tokens: long prompts fit


def save_tiny_stable_diffusion(
    folder: str | Path, seed: int = 0, layout: Path = TINY_STABLE_DIFFUSION_CONFIG
) -> tuple[Path, Path]:
    """Write a tiny random Stable Diffusion 1.x (``folder/model``, a ``StableDiffusionPipeline``
    folder as Hub checkpoints are) and a ControlNet for it (``folder/controlnet``); the same weights
    for a seed. ``layout``: another set of configs (:data:`SD15_LAYOUT_CONFIG`). Returns the two folders."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    values = json.loads(Path(layout).read_text())
    tokenizer = tiny_clip_tokenizer(layout)
    text_config = CLIPTextConfig(
        **values["text_encoder"],
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**values["unet"])
        vae = AutoencoderKL(**values["vae"])
        text_encoder = CLIPTextModel(text_config)
        controlnet = ControlNetModel(**values["controlnet"])
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**values["scheduler"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = Path(folder)
    pipe.save_pretrained(folder / "model")
    controlnet.save_pretrained(folder / "controlnet")
    return folder / "model", folder / "controlnet"
