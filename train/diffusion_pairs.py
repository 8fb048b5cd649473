"""Pseudo pairs from real photos by a diffusion model (the paper's future work, Sec. 6).

    accelerate launch train/diffusion_pairs.py --photos data/lhq --preset hosoda \
        --output_dir pairs/hosoda-diffusion --max_photos 30000

Photo i, fitted to --resolution, becomes its anime counterpart by Stable Diffusion img2img
(StableDiffusionControlNetImg2ImgPipeline: --model, a canny --controlnet, the --preset's prompts,
an optional --lora) from its own seed (SeedSequence([seed, i])); stage 2's segmentation-guided selection (L_BCE
with Mask2Former) keeps the pairs whose anime side kept the photo's semantics. The output is the
dataset stage 2 writes (datasets.load_dataset(output_dir): real, anime, seed, lbce, classes,
edge_score, photo and the generation settings) with a card reporting L_BCE, edge alignment and
how many pairs the selection kept; stage 3 trains on it with --paired_data. A killed run continues
when the same command is run again. --anime_only true writes --num_anime text-to-image anime images
instead (the unpaired anime set). The logic lives in scenimefy.training.diffusion_pairs; see
docs/diffusion-pairs.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import scenimefy  # noqa: F401  (installs the torchvision shim before transformers is imported)
from scenimefy.hub.download import DEFAULT_SEGMENTER
from scenimefy.losses.segmentation import MAX_LBCE, MIN_CLASSES
from scenimefy.training.config import parse_config
from scenimefy.training.diffusion_pairs import diffusion_pairs
from scenimefy.training.loop import run_script


@dataclass
class DiffusionPairsConfig:
    """Pseudo pairs from real photos by Stable Diffusion + ControlNet, kept by segmentation-guided selection."""

    # Photos: an image folder, a `datasets` folder or a Hub dataset id.
    photos: str = ""  # the real photos (required unless anime_only)
    photos_split: str = "train"  # split of a `datasets` source
    image_column: str = "image"  # image column of a `datasets` source
    photos_license: str = "unknown"  # the photos' licence, for the dataset card (e.g. "LHQ: see its authors' terms")
    max_photos: int | None = None  # the first N photos only (none: all); may grow between runs

    # Models: Hub ids or local folders; tiny: random tiny ones (smoke runs).
    model: str = "gsdf/Counterfeit-V2.5"  # a Stable Diffusion 1.x checkpoint (diffusers layout)
    controlnet: str | None = "lllyasviel/control_v11p_sd15_canny"  # a canny ControlNet (none: plain img2img)
    lora: str | None = None  # LoRA weights for load_lora_weights: a .safetensors file, a folder or a Hub id
    lora_scale: float = 1.0  # how strongly the LoRA is fused in
    segmenter: str = DEFAULT_SEGMENTER  # Mask2Former of the selection: Hub id or local folder; tiny: a random one
    seg_shortest_edge: int | None = None  # segment at this shorter side (none: the image's size)

    # Style: a preset's prompts, or your own.
    preset: str = "shinkai"  # shinkai or hosoda: prompt and negative prompt
    prompt: str | None = None  # replaces the preset's prompt
    negative_prompt: str | None = None  # replaces the preset's negative prompt

    # Generation.
    resolution: int = 512  # side of the square pairs (a multiple of the model's 64 for SD 1.x)
    resize: str = "crop"  # crop: centre square of the photo resized; resize: the whole photo squashed
    strength: float = 0.6  # img2img strength in (0, 1]: the share of denoising redone (lower keeps more)
    guidance_scale: float = 7.5  # classifier-free guidance
    num_inference_steps: int = 30  # scheduler steps (strength x steps run)
    scheduler: str = "default"  # default (the checkpoint's), ddim, pndm, euler, euler_a, dpm++, unipc
    controlnet_scale: float = 0.8  # ControlNet conditioning scale
    canny_low: int = 100  # lower Canny threshold of the control image (OpenCV)
    canny_high: int = 200  # upper Canny threshold

    # Selection (paper 3.2), as in stage 2.
    max_lbce: float = MAX_LBCE  # keep iff L_BCE < max_lbce ...
    min_classes: int = MIN_CLASSES  # ... and the photo shows > min_classes classes

    # Unpaired anime set (text-to-image, no photos).
    anime_only: bool = False  # write num_anime anime images (an image folder) instead of pairs
    num_anime: int = 1000  # how many

    # Run.
    output_dir: str = "pairs/diffusion"  # the dataset folder (resumable: run the same command again)
    seed: int = 0  # photo i uses the seed numpy.random.SeedSequence([seed, i]).generate_state(1)
    block_size: int = 32  # photos per shard; part of the run's identity
    batch_size: int = 4  # photos per pipeline call (speed and memory only)
    dtype: str = "auto"  # auto (float16 on a GPU, float32 on a CPU), float32, float16, bfloat16
    license: str = "other"  # the dataset card's licence (the photos' and the checkpoint's terms apply)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(DiffusionPairsConfig, argv, description=__doc__, prog="diffusion_pairs.py")
    return diffusion_pairs(config)


if __name__ == "__main__":
    run_script(main, "diffusion_pairs.py")
