"""Stage 2 of Scenimefy: pseudo pairs (paper 3.1) kept by segmentation-guided selection (paper 3.2).

Candidate i draws z from its own seed (``seed * 2**32 + i``), maps it with the SOURCE generator's
mapping network, truncates it (psi = 0.7) towards the source's mean latent, and renders the same
w with both generators: x_p = G_s(w) (real), y_p = G_t(w) (anime). The pair is kept iff
L_BCE(y_p, x_p) < max_lbce and x_p shows more than min_classes ADE20K classes.

Candidates are cut into blocks of ``block_size``; process p of P handles blocks p, p+P, ...
Each finished block leaves a parquet shard (its kept pairs) and then a marker, both written
under a temporary name and renamed, so a killed run loses at most the blocks in flight and a
restart resumes from what is on disk (``scenimefy.training.shards``, shared with the diffusion
stage ``diffusion_pairs``). Results depend on the seed and block size only, not on
batch size or process count. When N pairs are reached the main process keeps exactly the first N
(in candidate order) and writes the dataset card (``scenimefy.hub.cards``). Output
(``datasets.load_dataset(dir)``)::

    data/train-b000000.parquet ...   columns real, anime (Image), seed (int64), lbce (float32),
                                     classes (int32)
    README.md                        dataset card (YAML front matter for the Hub)
    .progress/                       run settings and one marker per finished block

``generate_pairs(config)`` is the whole stage; ``train/generate_pairs.py`` is its command line.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from datasets import Features, Image, Value

from scenimefy.data.pixels import to_uint8
from scenimefy.hub.download import WeightsUnavailableError, download_hub_folder, load_segmenter
from scenimefy.losses.segmentation import keep_pairs
from scenimefy.models.stylegan2 import StyleGAN2Generator
from scenimefy.training import checks
from scenimefy.training.config import ConfigError, config_to_dict
from scenimefy.training.shards import (
    atomic_write,
    hub_front_matter,
    png,
    read_markers,
    remove_leftovers,
    run_blocks,
    shard_path,
    shard_rows,
    write_marker,
    write_rows,
)
from scenimefy.training.tiny import RANDOM_SEGMENTER_LBCE, TINY, tiny_segmenter

FEATURES = Features(
    {"real": Image(), "anime": Image(), "seed": Value("int64"), "lbce": Value("float32"), "classes": Value("int32")}
)
#: Settings that decide which pairs a run produces; a resumed run must not change them.
CONTENT_KEYS = (
    "source",
    "target",
    "segmenter",
    "seg_shortest_edge",
    "seed",
    "block_size",
    "truncation",
    "mean_latent_samples",
    "max_lbce",
    "min_classes",
    "dtype",
)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def candidate_seed(base_seed: int, index: int) -> int:
    return base_seed * 2**32 + index


def generator_folder(name: str) -> str:
    """A run folder (generator/ + discriminator/, as stage 1 writes it) -> its generator/."""
    return str(Path(name) / "generator") if (Path(name) / "generator" / "config.json").is_file() else name


def check(config: Any) -> None:
    """Every setting that cannot work, before a model loads or a file is written."""
    for setting in ("source", "target"):
        value = getattr(config, setting)
        checks.check_model_source(setting, generator_folder(value), "config.json", "StyleGAN2 generator folder")
    if config.segmenter != TINY:
        checks.check_model_source("segmenter", config.segmenter, "config.json", "Mask2Former folder")
    checks.require(
        config.segmenter != TINY or config.max_lbce > RANDOM_SEGMENTER_LBCE,
        f"--segmenter tiny is random: every pair scores L_BCE ~ 5.01, so --max_lbce {config.max_lbce} keeps none; "
        "use --max_lbce 5.1 (as train/configs/pairs-tiny.yaml does)",
    )
    for name in ("num_pairs", "block_size", "batch_size", "mean_latent_samples"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.require(0 <= config.seed < 2**31, f"--seed {config.seed}: must lie in [0, 2**31)")
    checks.require(config.dtype in DTYPES, f"--dtype {config.dtype}: use one of {', '.join(DTYPES)}")
    if config.max_candidates is not None:
        checks.require(
            config.max_candidates >= config.num_pairs,
            f"--max_candidates {config.max_candidates} < --num_pairs {config.num_pairs}: at most "
            f"{config.max_candidates} pairs could be kept; use --max_candidates {20 * config.num_pairs} (or none)",
        )
    checks.require(
        not Path(config.output_dir).exists() or Path(config.output_dir).is_dir(),
        f"--output_dir {config.output_dir}: a file is in the way",
    )


# ---------------------------------------------------------------- files on disk


def start_run(out: Path, config: Any) -> None:
    """Create the folders; refuse to resume a run whose pair-defining settings differ."""
    from scenimefy.training import shards

    settings = {key: config_to_dict(config)[key] for key in CONTENT_KEYS}
    shards.start_run(out, settings, path_keys=("source", "target", "segmenter"))


# ---------------------------------------------------------------- models


def load_generator(name: str, device: torch.device, dtype: torch.dtype) -> StyleGAN2Generator:
    folder = Path(generator_folder(name))
    if not folder.is_dir():
        try:
            folder = download_hub_folder(name)  # the cache only when offline; fails fast
        except (WeightsUnavailableError, ValueError):
            raise WeightsUnavailableError(
                f"StyleGAN2 generator {name!r} is neither a folder nor a reachable Hub repo. Convert the authors' "
                "checkpoint with `scenimefy convert lhq-220000.pt DIR`, or download the repo once online."
            ) from None
    return StyleGAN2Generator.from_pretrained(folder, dtype=dtype).to(device).eval().requires_grad_(False)


class PairMaker:
    """Renders, scores and writes one block of candidates at a time."""

    def __init__(self, config: Any, out: Path, device: torch.device) -> None:
        dtype = DTYPES[config.dtype]
        self.config, self.out, self.device, self.dtype = config, out, device, dtype
        self.source = load_generator(config.source, device, dtype)
        self.target = load_generator(config.target, device, dtype)
        for key in ("size", "style_dim"):
            if self.source.config[key] != self.target.config[key]:
                raise ConfigError(f"source and target generators differ in {key}")
        self.style_dim = self.source.config["style_dim"]
        if config.segmenter == TINY:
            self.segmenter = tiny_segmenter(shortest_edge=config.seg_shortest_edge)
        else:
            self.segmenter = load_segmenter(config.segmenter, shortest_edge=config.seg_shortest_edge)
        self.segmenter.to(device, dtype)
        # The truncation centre from z drawn by a CPU generator: the same on every device and process.
        cpu_generator = torch.Generator().manual_seed(config.seed)
        self.mean_w = self.source.mean_latent(config.mean_latent_samples, generator=cpu_generator)

    @torch.inference_mode()
    def score(self, indices: range) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates ``indices`` -> seeds, real and anime uint8 images, L_BCE, abundance."""
        seeds = [candidate_seed(self.config.seed, i) for i in indices]
        z = torch.stack([torch.randn(self.style_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        w = self.source.mapping(z.to(self.device, self.dtype))
        w = StyleGAN2Generator.truncate(w, self.mean_w, self.config.truncation)
        real = to_uint8(self.source(w, noise_mode="const"))
        anime = to_uint8(self.target(w, noise_mode="const"))
        lbce, classes = self.segmenter.score_pairs(anime, real)
        return seeds, real, anime, lbce, classes

    def make_block(self, block: int) -> dict:
        """Process candidates of ``block``; write its shard (if any pair is kept), then its marker."""
        cfg = self.config
        start = block * cfg.block_size
        rows: dict[str, list] = {name: [] for name in FEATURES}
        for first in range(start, start + cfg.block_size, cfg.batch_size):
            indices = range(first, min(first + cfg.batch_size, start + cfg.block_size))
            seeds, real, anime, lbce, classes = self.score(indices)
            for j in keep_pairs(lbce, classes, cfg.max_lbce, cfg.min_classes).nonzero().flatten().tolist():
                rows["real"].append(png(real[j]))
                rows["anime"].append(png(anime[j]))
                rows["seed"].append(seeds[j])
                rows["lbce"].append(float(lbce[j]))
                rows["classes"].append(int(classes[j]))
        if rows["seed"]:
            write_rows(shard_path(self.out, block), rows, FEATURES)
        record = {"block": block, "candidates": cfg.block_size, "kept": len(rows["seed"])}
        write_marker(self.out, block, record)
        return record


# ---------------------------------------------------------------- finishing


def finalize(out: Path, num_pairs: int, maker: PairMaker) -> int:
    """Keep exactly the first ``num_pairs`` kept pairs in candidate order; returns how many there are.

    Idempotent: shards past the cut are removed, the shard at the cut is truncated. A shard with
    fewer rows than needed (truncated by an earlier run that asked for fewer pairs) is redone.
    """
    records = read_markers(out)
    need = num_pairs
    for block in sorted(records):
        want = min(records[block]["kept"], need)
        need -= want
        path = shard_path(out, block)
        if shard_rows(path) < want:
            maker.make_block(block)
        if want == 0:
            path.unlink(missing_ok=True)
        elif shard_rows(path) > want:
            write_rows(path, pq.read_table(path).slice(0, want).to_pydict(), FEATURES)
    remove_leftovers(out, records)
    return num_pairs - need


def dataset_card(out: Path, config: Any, size: int) -> str:
    """The pairs' card: Hub front matter (configs, features, splits), statistics, settings, licence."""
    from scenimefy.hub import cards

    shards = sorted((out / "data").glob("train-b*.parquet"))
    columns = [pq.read_table(p, columns=["lbce", "classes"]) for p in shards]
    lbce = np.concatenate([t["lbce"].to_numpy() for t in columns]) if columns else np.zeros(0)
    classes = np.concatenate([t["classes"].to_numpy() for t in columns]) if columns else np.zeros(0)
    n = len(lbce)
    lbce_summary = f"mean {lbce.mean():.4f}, min {lbce.min():.4f}, max {lbce.max():.4f}" if n else "-"
    records = read_markers(out).values()
    candidates, kept = sum(r["candidates"] for r in records), sum(r["kept"] for r in records)
    front = hub_front_matter(out, FEATURES, n, ["stylegan2"])
    segmenter = "a randomly initialised tiny Mask2Former (smoke test)" if config.segmenter == TINY else config.segmenter
    summary = (
        f"{n} pseudo pairs (real scene `real`, anime scene `anime`) rendered from the same latent by a source "
        f"StyleGAN2 (`{config.source}`) and its anime fine-tune (`{config.target}`), kept by the "
        "segmentation-guided selection of Scenimefy (Jiang et al., ICCV 2023, Sec. 3.2): L_BCE < "
        f"{config.max_lbce} and more than {config.min_classes} segmentation classes in the real image (Mask2Former: "
        f"{segmenter}).\n\n"
        f"- candidates examined: {candidates}, kept: {kept} (acceptance {kept / max(candidates, 1):.1%})\n"
        f"- L_BCE of the kept pairs: {lbce_summary}\n"
        f"- classes in the real image: mean {classes.mean() if n else 0:.2f}\n\n"
        f"Columns: `real`, `anime` (PNG, {size}x{size}), `seed` (z = `torch.randn(style_dim, "
        "generator=torch.Generator().manual_seed(seed))`, then the source mapping and truncation psi = "
        f"{config.truncation} towards the mean of {config.mean_latent_samples} mapped z), `lbce` (semantic "
        "consistency, lower is better), `classes` (distinct classes in `real`).\n\n"
        f'```python\nfrom datasets import load_dataset\n\npairs = load_dataset("{config.output_dir}", split="train")'
        "  # or the Hub repo id after upload\n```\n"
    )
    settings = "\n".join(f"| `{k}` | `{v}` |" for k, v in config_to_dict(config).items())
    license, provenance, uses_authors_weights = cards.resolve_license(
        config.license, {"source": config.source, "target": config.target}
    )
    return cards.render(
        front,
        "Scenimefy pseudo paired data",
        [summary, "## Generation settings\n\n| setting | value |\n|---|---|\n" + settings + "\n"],
        license=license,
        subject="These pairs",
        provenance=provenance,
        uses_authors_weights=uses_authors_weights,
    )


def generate_pairs(config: Any) -> int:
    """The whole stage under accelerate (see the module docstring); returns the exit status:
    0, or 1 when fewer than ``num_pairs`` passed the selection within ``max_candidates``."""
    from accelerate import Accelerator

    check(config)
    accelerator = Accelerator()
    out = Path(config.output_dir)
    maker = PairMaker(config, out, accelerator.device)  # bad model paths fail before anything is written
    if accelerator.is_main_process:
        start_run(out, config)
        print(
            f"generating {config.num_pairs} pairs with {accelerator.num_processes} process(es) on {accelerator.device}"
        )
    accelerator.wait_for_everyone()

    max_candidates = config.max_candidates if config.max_candidates is not None else 20 * config.num_pairs
    kept, candidates = run_blocks(
        accelerator,
        out,
        math.ceil(max_candidates / config.block_size),
        maker.make_block,
        progress=lambda kept, candidates: kept,
        total=config.num_pairs,
        desc="pairs",
        unit="pair",
        enough=lambda kept: kept >= config.num_pairs,
        stopped=lambda kept, candidates: (
            f"stopped after {candidates} candidates ({min(kept, config.num_pairs)} of {config.num_pairs} pairs "
            "kept); run the same command again to continue where it stopped"
        ),
    )

    accelerator.wait_for_everyone()
    status = 0
    if accelerator.is_main_process:
        written = finalize(out, config.num_pairs, maker)
        atomic_write(out / "README.md", lambda p: p.write_text(dataset_card(out, config, maker.source.config["size"])))
        if written < config.num_pairs:
            print(
                f"warning: only {written} of {config.num_pairs} pairs passed the selection in {candidates} "
                "candidates; raise --max_candidates or loosen --max_lbce / --min_classes",
                file=sys.stderr,
            )
            status = 1
        else:
            print(f"{written} pairs ({kept / max(candidates, 1):.1%} of {candidates} candidates kept) -> {out}")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # a process leaving with its process group alive can abort (SIGABRT) at exit
    return status
