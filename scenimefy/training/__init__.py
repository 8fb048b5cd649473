"""Training the paper's three stages and the distilled student (``train/`` scripts are thin wrappers of these).

- ``config``: one typed dataclass per stage, filled from YAML and ``--key value`` flags; its ``--help``
- ``checks``: start-up checks (data paths, contradicting settings), before anything loads or is written
- ``loop``: what every script does around its loop: the Accelerator, resume, Ctrl-C, one-line errors
- ``checkpoints``: accelerate checkpoints, ``--resume latest``
- ``tracking``: the JSON-lines metrics tracker and the accelerate trackers a run reports to
- ``stylegan``: stage 1, StyleGAN2 training and semantic-constrained fine-tuning (G_s, G_t)
- ``pairs``: stage 2, pseudo-pair generation and segmentation-guided selection
- ``diffusion_pairs`` (+ ``diffusion_models``, ``diffusion_card``): pairs from real photos by Stable
  Diffusion + ControlNet, kept by the same selection (the paper's future work)
- ``shards``: the resumable, block-sharded pairs dataset both pair stages write
- ``translator``: stage 3, the semi-supervised translator (losses, networks, data, one train step)
- ``distill``: stage 4 (Scenimefy-Lite), a small student distilled from a translator (teacher cache, losses, step)
- ``tiny``: tiny random stand-ins for CLIP, Mask2Former and Stable Diffusion, used by the ``*-tiny.yaml`` presets
"""
