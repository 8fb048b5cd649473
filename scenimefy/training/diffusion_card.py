"""The dataset card of the diffusion pairs: the pairs report (L_BCE and edge-alignment
distributions, how many pairs the selection kept), the models and their licences, the prompts and
the photos' source, rendered by the one card writer (``scenimefy.hub.cards``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scenimefy.training.config import config_to_dict
from scenimefy.training.diffusion_models import SD_LICENSE
from scenimefy.training.shards import hub_front_matter, read_markers
from scenimefy.training.tiny import TINY


def distribution(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    q = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
    return (
        f"mean {values.mean():.4f}; min {q[0]:.4f}, 10% {q[1]:.4f}, median {q[2]:.4f}, 90% {q[3]:.4f}, max {q[4]:.4f}"
    )


def histogram(values: np.ndarray, bins: int = 8) -> str:
    """A markdown table of ``values`` in ``bins`` equal bins."""
    if not len(values):
        return ""
    counts, edges = np.histogram(values, bins=bins if values.max() > values.min() else 1)
    lines = ["| L_BCE from | to | pairs |", "|---:|---:|---:|"]
    lines += [f"| {a:.4f} | {b:.4f} | {c} |" for a, b, c in zip(edges[:-1], edges[1:], counts)]
    return "\n".join(lines) + "\n"


def model_license(name: str | None) -> str:
    """A model's licence from its card or training record where it is local; else SD 1.x's."""
    if not name or name == TINY:
        return "none (random weights)" if name == TINY else "-"
    from scenimefy.hub import cards

    local = cards.read_license(name) if Path(name).exists() else None
    return local or f"{SD_LICENSE} (as stated for SD 1.x checkpoints; check the model card of `{name}`)"


def dataset_card(out: Path, config: Any, features: Any, prompt: str, negative_prompt: str) -> str:
    """The pairs' card: Hub front matter, the pairs report, sources and licences, settings."""
    import pyarrow.parquet as pq

    from scenimefy.hub import cards

    shards = sorted((out / "data").glob("train-b*.parquet"))
    tables = [pq.read_table(p, columns=["lbce", "edge_score"]) for p in shards]
    kept_lbce = np.concatenate([t["lbce"].to_numpy() for t in tables]) if tables else np.zeros(0)
    kept_edges = np.concatenate([t["edge_score"].to_numpy() for t in tables]) if tables else np.zeros(0)
    records = list(read_markers(out).values())
    all_lbce = np.array([v for r in records for v in r.get("lbce", [])], dtype=np.float64)
    all_edges = np.array([v for r in records for v in r.get("edge_score", [])], dtype=np.float64)
    candidates, n = sum(r["candidates"] for r in records), len(kept_lbce)
    tiny_note = " (a randomly initialised tiny model: a smoke test, not anime)" if config.model == TINY else ""
    segmenter = "a randomly initialised tiny Mask2Former (smoke test)" if config.segmenter == TINY else config.segmenter
    summary = (
        f"{n} pseudo pairs: `real` is a real photo from `{config.photos}`, fitted to {config.resolution}x"
        f"{config.resolution} ({'centre crop' if config.resize == 'crop' else 'resized'}), `anime` its anime "
        f"counterpart made by Stable Diffusion img2img (`{config.model}`{tiny_note}, strength {config.strength}"
        + (f", canny ControlNet `{config.controlnet}` at scale {config.controlnet_scale}" if config.controlnet else "")
        + (f", LoRA `{config.lora}` at scale {config.lora_scale}" if config.lora else "")
        + "), the diffusion route to pseudo pairs that Scenimefy (Jiang et al., ICCV 2023) names as its future "
        "work (Sec. 6). Pairs were kept by Scenimefy's segmentation-guided selection (Sec. 3.2): L_BCE < "
        f"{config.max_lbce} and more than {config.min_classes} segmentation classes in the photo (Mask2Former: "
        f"{segmenter}).\n"
    )
    report = (
        "## Pairs report\n\n"
        f"- photos turned into candidates: {candidates}; kept by the selection: {n} "
        f"({n / max(candidates, 1):.1%})\n"
        f"- L_BCE of every candidate (lower: the anime side kept the photo's semantics): {distribution(all_lbce)}\n"
        f"- L_BCE of the kept pairs: {distribution(kept_lbce)}\n"
        f"- edge alignment photo vs anime (F-score of Canny edges within 2 px; 1 = the same edges): every "
        f"candidate {distribution(all_edges)}; kept {distribution(kept_edges)}\n\n"
        "L_BCE of every candidate:\n\n" + histogram(all_lbce)
    )
    sources = (
        "## Sources and licences\n\n"
        "| part | source | licence |\n|---|---|---|\n"
        f"| photos (`real`) | `{config.photos}` | {config.photos_license} |\n"
        f"| diffusion checkpoint | `{config.model}` | {model_license(config.model)} |\n"
        + (
            f"| ControlNet | `{config.controlnet}` | {model_license(config.controlnet)} |\n"
            if config.controlnet
            else ""
        )
        + (f"| LoRA | `{config.lora}` | {model_license(config.lora)} |\n" if config.lora else "")
        + f"| segmenter (selection only) | `{segmenter}` | - |\n\n"
        "The `anime` images are outputs of the checkpoint above: CreativeML OpenRAIL-M claims no rights on "
        "outputs but its use restrictions (Attachment A) travel with them; the `real` photos keep the terms of "
        f"their source.\n\nPrompt: `{prompt}`\n\nNegative prompt: `{negative_prompt}`\n\n"
        "Columns: `real`, `anime` (PNG), `seed` (the photo's noise: `torch.Generator().manual_seed(seed)`; "
        f"`numpy.random.SeedSequence([{config.seed}, i]).generate_state(1)` for photo i), "
        "`lbce`, `classes` (as stage 2's pairs), `edge_score`, `photo` (where the photo came from), and "
        "the generation settings of the pair.\n\n"
        f'```python\nfrom datasets import load_dataset\n\npairs = load_dataset("{config.output_dir}", split="train")'
        "  # or the Hub repo id after upload\n```\n"
    )
    settings = "\n".join(f"| `{k}` | `{v}` |" for k, v in config_to_dict(config).items())
    front = hub_front_matter(out, features, n, ["diffusion", "stable-diffusion", "controlnet"])
    return cards.render(
        front,
        "Scenimefy pseudo pairs from real photos (diffusion)",
        [summary, report, sources, "## Generation settings\n\n| setting | value |\n|---|---|\n" + settings + "\n"],
        license=config.license,
        subject="These pairs",
        provenance=f"photos from `{config.photos}`, anime images by `{config.model}`",
        uses_authors_weights=False,
    )
