"""Stage 2 of Scenimefy: pseudo pairs from G_s and G_t, kept by segmentation-guided selection.

    accelerate launch train/generate_pairs.py --source G_s_dir --target G_t_dir \
        --output_dir pairs/shinkai --num_pairs 30000

``--source`` / ``--target``: StyleGAN2 generator folders (or a stage-1 output_dir holding
``generator/``) or Hub ids. Pair i is candidate seed ``seed * 2**32 + i`` rendered by both
generators at truncation 0.7, kept iff L_BCE(anime, real) < max_lbce and the real image shows more
than min_classes ADE20K classes (Mask2Former). The output is a Hub-ready dataset folder
(``datasets.load_dataset(output_dir)``: real, anime, seed, lbce, classes) with its card; a killed
run continues when the same command is run again. The logic lives in ``scenimefy.training.pairs``;
see docs/selection.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import scenimefy  # noqa: F401  (installs the torchvision shim before transformers is imported)
from scenimefy.hub.download import DEFAULT_SEGMENTER
from scenimefy.losses.segmentation import MAX_LBCE, MIN_CLASSES
from scenimefy.training.config import parse_config
from scenimefy.training.loop import run_script
from scenimefy.training.pairs import candidate_seed, generate_pairs  # noqa: F401  (candidate_seed: tests)


@dataclass
class GeneratePairsConfig:
    """Generate pseudo pairs from a source and a fine-tuned target StyleGAN2 (Scenimefy stage 2)."""

    # Generators and segmenter: local folders or Hub ids.
    source: str = ""  # G_s, trained on real scenes: a generator folder, a stage-1 output_dir or a Hub id (required)
    target: str = ""  # G_t, fine-tuned on anime scenes: the same kinds (required)
    segmenter: str = DEFAULT_SEGMENTER  # Mask2Former Hub id or local folder; tiny: a random one (smoke runs)
    seg_shortest_edge: int | None = (
        None  # segment at this shorter side (none: the generator's size, like the reference)
    )

    # Selection (paper 3.2).
    num_pairs: int = 30000  # pairs to keep (paper: 30,000)
    truncation: float = 0.7  # psi around the source's mean latent (paper 4.1)
    mean_latent_samples: int = 4096  # z samples for the mean latent
    max_lbce: float = MAX_LBCE  # keep iff L_BCE < max_lbce ...
    min_classes: int = MIN_CLASSES  # ... and the real image shows > min_classes classes
    max_candidates: int | None = None  # give up after this many candidates (none: 20 x num_pairs)

    # Run.
    output_dir: str = "pairs"  # the dataset folder (resumable: run the same command again)
    seed: int = 0  # candidate i uses seed * 2**32 + i
    block_size: int = 128  # candidates per shard; part of the run's identity
    batch_size: int = 16  # candidates per forward pass (speed only)
    dtype: str = "float32"  # generators and segmenter: float32, float16, bfloat16
    license: str = "auto"  # dataset card licence; auto: the generators' (S-Lab if derived from the authors')


def main(argv: list[str] | None = None) -> int:
    config = parse_config(GeneratePairsConfig, argv, description=__doc__, prog="generate_pairs.py")
    return generate_pairs(config)


if __name__ == "__main__":
    run_script(main, "generate_pairs.py")
