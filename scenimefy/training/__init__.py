"""Training the three stages of the paper (the ``train/`` scripts are thin wrappers around these).

- ``config``: one typed dataclass per stage, filled from YAML and ``--key value`` flags
- ``checkpoints``: accelerate checkpoints, ``--resume latest``
- ``tracking``: the JSON-lines metrics tracker and the accelerate trackers a run reports to
- ``stylegan``: stage 1, StyleGAN2 training and semantic-constrained fine-tuning (G_s, G_t)
- ``translator``: stage 3, the semi-supervised translator (losses, networks, one train step)
"""
