"""The device check: does the toolkit compute the right thing, fast, on a GPU? One command, <= 8 min on an H100.

    python benchmarks/gpu_check.py                 # on a CUDA machine: paper sizes
    python benchmarks/gpu_check.py --tiny          # anywhere (CPU): tiny sizes, keeps it correct (tests)
    make gpu-check                                 # the first, with the output in gpu-check.log

On the bare GPU machine (no install, its own python3; docs/inference.md has the exact command):
``benchmarks/device_wheels.sh`` here prepares the wheels of what that machine lacks, then there
``PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py``.

Steps (``STEPS``, in order; ``--steps`` picks some; each prints its rows, failures end the run
with exit status 1):

* ``parity``: ``translate`` in the fast path (fp16 on CUDA) against fp32 with TF32 off (exact
  mode, the reference) at 1024x1024, 1920x1080 and 4K in tiles: mean / max difference (in 8-bit
  levels), NaN check, latency of both and of the authors' eager fp32 ``model(x)``, peak GPU memory;
* ``video``: ``scenimefy video`` (``stylize_video``) on the test clip: frames/s, peak memory;
* ``diffusion``: the diffusion-pairs stage (docs/diffusion-pairs.md): s/pair and h per 1,000 pairs
  with the tiny preset (CPU, ``--tiny``) or the real recipe / SD 1.5's layout at 512 px (GPU);
* ``training``: for each precision (``fp16``, ``bf16``) one ``accelerate launch
  --mixed_precision <p>`` of this script, which runs a few steps of every training stage at the
  paper's sizes with random weights (``TRAINING_STAGES``): StyleGAN2 G_s (256 px) with R1 and path
  length every step, the fine-tuning of G_t (CLIP ViT-B-32 + LPIPS + D with R1), pair generation
  (G_s + G_t + Mask2Former Swin-B) and the translator (256 px crops); each loss must stay finite;
  steps/s after a warm-up step and peak memory.

A step is a function ``step(check: Check) -> None``; a training stage is a function
``stage(run: StageRun) -> None``: adding one is adding a function to one of the two lists.

Weights: the parity checkpoint (``../shared/parity/net_G.pth``, ``--weights``) when it is there,
else a seeded random translator (the device machine has neither ../shared nor a network).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from common import SHARED, cpu_line

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy._tf32 import no_tf32
from scenimefy.models import ScenimefyTranslator, StyleGAN2Discriminator, StyleGAN2Generator

WEIGHTS = SHARED / "parity" / "net_G.pth"
CLIP = SHARED / "data" / "video" / "hanami.mp4"
PRECISIONS = ("fp16", "bf16")
#: Fast path vs fp32 at which the parity step fails: mean / max absolute difference in 8-bit levels.
#: Measured on CPU bf16 (~1.4 mean on photos); fp16 has 3 more mantissa bits.
MAX_MEAN_LEVELS, MAX_MAX_LEVELS = 2.0, 64.0


@dataclass
class Check:
    device: torch.device
    tiny: bool
    reps: int
    weights: Path | None
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"FAILED: {message}")

    def translator(self) -> ScenimefyTranslator:
        if self.tiny:
            torch.manual_seed(0)
            return ScenimefyTranslator(ngf=8, n_blocks=2).eval().to(self.device)
        if self.weights is not None and self.weights.is_file():
            from scenimefy.hub.convert import load_reference_translator

            return load_reference_translator(self.weights).to(self.device)
        torch.manual_seed(0)
        from scenimefy.training.translator import init_weights

        return init_weights(ScenimefyTranslator()).eval().to(self.device)


# ------------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB" if device.type == "cuda" else "-"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Seconds per call: one warm-up call (kernel selection, allocator), then the mean of ``reps``."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


# ------------------------------------------------------------------------------- steps


def step_parity(check: Check) -> None:
    """translate's fast path vs fp32 without TF32, at the sizes people use, and 4K in tiles."""
    from scenimefy.inference import choose_settings, translate

    print("\n== parity: translate fast path vs fp32 (TF32 off), latency, peak memory ==")
    device, model = check.device, check.translator()
    print(f"fast path: {choose_settings(device).reason}; weights: {describe_weights(check)}")
    if check.tiny:
        cases = [("1024x1024", 64, 64, None), ("1920x1080", 64, 96, None), ("3840x2160 tiled", 96, 160, 32)]
    else:
        cases = [
            ("1024x1024", 1024, 1024, None),
            ("1920x1080", 1080, 1920, None),
            ("3840x2160 tiled", 2160, 3840, 1024),
        ]
    generator = torch.Generator().manual_seed(0)
    for name, h, w, tile in cases:
        x = smooth_image(h, w, generator).to(device)
        reset_peak(device)
        exact = translate(model, x, exact=True, tile_size=tile)
        t_exact = timed(lambda x=x, tile=tile: translate(model, x, exact=True, tile_size=tile), device, check.reps)
        exact_mem = peak_mb(device)
        reset_peak(device)
        fast = translate(model, x, tile_size=tile)
        t_fast = timed(lambda x=x, tile=tile: translate(model, x, tile_size=tile), device, check.reps)
        fast_mem = peak_mb(device)
        levels = (fast - exact).abs() * 127.5
        nan = bool(torch.isnan(fast).any() or torch.isnan(exact).any())
        eager = ""
        if tile is None:  # the authors' path: fp32 eager model(x), TF32 off
            reset_peak(device)
            with torch.inference_mode(), no_tf32(device):
                t_eager = timed(lambda x=x: model(x), device, check.reps)
            eager = f", eager fp32 {t_eager * 1e3:.1f} ms ({peak_mb(device)})"
        mean, peak = levels.mean().item(), levels.max().item()
        print(
            f"{name}: fast vs fp32 mean {mean:.3f} / max {peak:.2f} levels, NaN {'yes' if nan else 'no'}; "
            f"fast {t_fast * 1e3:.1f} ms ({fast_mem}), exact fp32 {t_exact * 1e3:.1f} ms ({exact_mem}){eager}"
        )
        if nan or not math.isfinite(mean):
            check.fail(f"parity {name}: NaN in the output")
        elif mean > MAX_MEAN_LEVELS or peak > MAX_MAX_LEVELS:
            check.fail(f"parity {name}: fast path {mean:.2f} / {peak:.1f} levels from fp32")


def smooth_image(h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """A photo-like (1, 3, h, w) input in [-1, 1]: smooth colour fields plus a little noise."""
    coarse = torch.rand(1, 3, max(2, h // 64), max(2, w // 64), generator=generator)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    x = x + 0.03 * torch.randn(1, 3, h, w, generator=generator)
    return x.clamp(0, 1) * 2 - 1


def describe_weights(check: Check) -> str:
    if check.tiny:
        return "tiny random"
    return str(check.weights) if check.weights is not None and check.weights.is_file() else "random (seeded)"


def step_video(check: Check) -> None:
    """``scenimefy video``'s work (stylize_video) on the test clip, or a synthetic clip without it."""
    from scenimefy.inference import ScenimefyPipeline
    from scenimefy.inference.video import stylize_video

    print("\n== video: scenimefy video (stylize_video) ==")
    pipe = ScenimefyPipeline(check.translator()).to(check.device)
    options = {"duration": 1.0, "max_side": 128} if check.tiny else {}
    with tempfile.TemporaryDirectory() as folder:
        clip = CLIP if CLIP.is_file() else synthetic_clip(Path(folder) / "clip.mp4", check.tiny)
        reset_peak(check.device)
        result = stylize_video(pipe, clip, Path(folder) / "out.mp4", progress=False, **options)
    print(
        f"{clip.name}: {result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s: "
        f"{result.frames_per_second:.2f} frames/s ({peak_mb(check.device)})"
    )
    if not result.frames:
        check.fail("video: no frames written")


def synthetic_clip(path: Path, tiny: bool) -> Path:
    """A 3 s 1280x720 (tiny: 1 s 160x96) H.264 clip of moving colour fields."""
    import av
    import numpy as np

    w, h, frames = (160, 96, 25) if tiny else (1280, 720, 75)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            rgb = np.stack([(xx + 4 * t) % 256, (yy + 2 * t) % 256, (xx + yy) // 8 % 256], axis=-1).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


def step_training(check: Check) -> None:
    """One ``accelerate launch --mixed_precision <p>`` of this script's training stages per precision."""
    print(f"\n== training: every stage at {'tiny' if check.tiny else 'paper'} sizes under accelerate ==")
    for precision in PRECISIONS:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
        cmd += ["--mixed_precision", precision, "--dynamo_backend", "no"]
        cmd += (
            ["--cpu", "--num_cpu_threads_per_process", str(torch.get_num_threads())]
            if check.device.type == "cpu"
            else []
        )
        cmd += [__file__, "--stages", "--reps", str(check.reps)] + (["--tiny"] if check.tiny else [])
        print(f"-- accelerate launch --mixed_precision {precision}", flush=True)
        result = subprocess.run(cmd, check=False)
        if result.returncode:
            check.fail(f"training under --mixed_precision {precision}: exit status {result.returncode}")


# ------------------------------------------------------------------------------- training stages


@dataclass
class StageRun:
    """What every training stage gets: the accelerator, the sizes, and where to report."""

    accelerator: object  # accelerate.Accelerator
    tiny: bool
    reps: int
    batch: int
    failures: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def measure(self, name: str, step: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Warm-up step, then ``reps`` timed ones; every loss of every step must be finite."""
        reset_peak(self.device)
        bad: set[str] = set()

        def checked() -> None:
            for key, value in step().items():
                if not torch.isfinite(value.detach()).all():
                    bad.add(key)

        seconds = timed(checked, self.device, self.reps)
        status = f"NOT FINITE: {', '.join(sorted(bad))}" if bad else "losses finite"
        print(f"{name:52s} {1 / seconds:8.2f} steps/s {seconds * 1e3:9.1f} ms/step ({peak_mb(self.device)}) {status}")
        if bad:
            self.failures.append(f"{name}: {', '.join(sorted(bad))} not finite")

    def prepare(self, *objects):
        return self.accelerator.prepare(*objects)


def stylegan_nets(run: StageRun) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator, int]:
    size = 32 if run.tiny else 256
    config = {"channel_multiplier": 1, "channel_max": 32, "style_dim": 32, "n_mlp": 2} if run.tiny else {}
    g = StyleGAN2Generator(size=size, **config).to(run.device)
    d = StyleGAN2Discriminator(size=size, **{k: v for k, v in config.items() if k.startswith("channel")}).to(run.device)
    return g, d, size


def stage_stylegan(run: StageRun) -> None:
    """Stage 1, G_s: D step + R1, G step + path length, every step (the lazy intervals' worst case)."""
    from scenimefy.losses.stylegan2 import generator_nonsaturating_loss, path_length_penalty
    from scenimefy.training.stylegan import (
        adam_for_lazy_regularization,
        current_scale,
        discriminator_step,
        sample_latents,
    )

    acc = run.accelerator
    g, d, size = stylegan_nets(run)
    g_opt = adam_for_lazy_regularization(g.parameters(), 2e-3, 4)
    d_opt = adam_for_lazy_regularization(d.parameters(), 2e-3, 16)
    g, d, g_opt, d_opt = run.prepare(g, d, g_opt, d_opt)
    real = torch.rand(run.batch, 3, size, size, device=run.device) * 2 - 1
    state = {"mean_path_length": 0.0}

    def step() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = g(sample_latents(g, run.batch, 0.9, run.device), noise_mode="random")
        logs = discriminator_step(d, d_opt, real, fake, acc.backward, 10.0, True, 16, grad_scaler=acc.scaler)
        g_loss = generator_nonsaturating_loss(d(g(sample_latents(g, run.batch, 0.9, run.device))))
        g_opt.zero_grad(set_to_none=True)
        acc.backward(g_loss)
        g_opt.step()
        latents = sample_latents(g, max(1, run.batch // 2), 0.9, run.device)
        fake = g(latents, noise_mode="random")
        penalty, mean, _ = path_length_penalty(
            fake, latents, state["mean_path_length"], grad_scale=current_scale(acc.scaler)
        )
        g_opt.zero_grad(set_to_none=True)
        acc.backward(2.0 * 4 * penalty + 0 * fake[0, 0, 0, 0])
        g_opt.step()
        state["mean_path_length"] = mean
        return {"d_loss": torch.tensor(logs["d_loss"]), "r1": torch.tensor(logs["r1"]), "g_loss": g_loss, "pl": penalty}

    run.measure(f"stage 1 StyleGAN2 G+D, R1 + path length, {size} px", step)


def stage_finetune(run: StageRun) -> None:
    """Stage 1, G_t: the semantic-constrained fine-tuning step (Eq. 3) with D + R1."""
    from scenimefy.losses.clip import load_clip_image_encoder
    from scenimefy.losses.finetune import finetune_generator_loss, load_lpips
    from scenimefy.training.stylegan import discriminator_step, sample_latents
    from scenimefy.training.tiny import TINY, clip_model_name

    acc = run.accelerator
    source, d, size = stylegan_nets(run)
    target, _, _ = stylegan_nets(run)
    target.load_state_dict(source.state_dict())
    clip = load_clip_image_encoder(clip_model_name(TINY if run.tiny else "ViT-B-32"), pretrained=None).to(run.device)
    lpips = load_lpips(pretrained=False).to(run.device)
    g_opt = torch.optim.Adam(target.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    target, d, g_opt, d_opt = run.prepare(target, d, g_opt, d_opt)
    real = torch.rand(run.batch, 3, size, size, device=run.device) * 2 - 1

    def step() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            latents = sample_latents(source, run.batch, 0.9, run.device)
            noise = source.make_noise(run.batch)
            x_p = source(latents, noise=noise)
            fake = target(latents, noise=noise)
        logs = discriminator_step(d, d_opt, real, fake, acc.backward, 10.0, True, 16, grad_scaler=acc.scaler)
        y_p = target(latents, noise=noise)
        terms = finetune_generator_loss(d(y_p), x_p, y_p, clip, lpips, patch_size=8 if run.tiny else 64)
        g_opt.zero_grad(set_to_none=True)
        acc.backward(terms["loss"])
        g_opt.step()
        return {"d_loss": torch.tensor(logs["d_loss"]), "r1": torch.tensor(logs["r1"]), **terms}

    run.measure(f"stage 1 fine-tuning G_t + D with R1, {size} px", step)


def stage_pairs(run: StageRun) -> None:
    """Stage 2: a batch of pseudo pairs (G_s, G_t) scored by the segmenter (no gradients)."""
    from scenimefy.training.tiny import tiny_segmenter

    g, _, _ = stylegan_nets(run)
    source, _, _ = stylegan_nets(run)
    segmenter = (tiny_segmenter() if run.tiny else paper_segmenter()).to(run.device)

    @torch.no_grad()
    def step() -> dict[str, torch.Tensor]:
        with run.accelerator.autocast():
            w = g.mapping(torch.randn(run.batch, g.style_dim, device=run.device))
            y, x = g(w), source(w)
            scores = segmenter.score_pairs(y, x)
        return {"images": torch.stack([y.float().mean(), x.float().mean()]), "l_bce": scores[0], "abundance": scores[1]}

    run.measure(f"stage 2 pair generation + L_BCE, {run.batch} pairs", step)


def step_diffusion_pairs(check: Check) -> None:
    check_diffusion_pairs(check.device, check.tiny, check.reps)


def sample_photos(folder: Path) -> Path:
    """The shared sample photos, or (on a machine without ../shared) four synthetic ones."""
    if (SHARED / "samples").is_dir():
        return SHARED / "samples"
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = (smooth_image(256, 256, generator)[0].permute(1, 2, 0) * 127.5 + 127.5).clamp(0, 255)
        Image.fromarray(pixels.byte().numpy()).save(folder / f"synthetic-{i}.png")
    return folder


def check_diffusion_pairs(device: torch.device, tiny: bool, reps: int) -> None:
    """Diffusion pairs (docs/diffusion-pairs.md): photos -> SD img2img + canny ControlNet -> L_BCE and
    edge scores, through the stage's own code on the shared sample photos. --tiny / CPU: the tiny
    preset. GPU: the real recipe (train/diffusion_pairs.py defaults, 512 px) when its weights are in
    the Hugging Face cache, else SD 1.5's layout with random weights and a tiny segmenter (the same
    diffusion compute: nothing can be downloaded on the GPU machine)."""
    import importlib.util
    import sys

    from huggingface_hub import try_to_load_from_cache

    from scenimefy.training.config import parse_config
    from scenimefy.training.diffusion_pairs import DiffusionPairMaker, photo_source
    from scenimefy.training.tiny import SD15_LAYOUT_CONFIG, save_tiny_stable_diffusion

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("diffusion_pairs_script", repo / "train" / "diffusion_pairs.py")
    script = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with tempfile.TemporaryDirectory() as tmp:
        photos = sample_photos(Path(tmp) / "photos")
        out = str(Path(tmp) / "pairs")
        argv = ["--photos", str(photos), "--output_dir", out, "--block_size", "4", "--batch_size", "4"]
        what = "the real recipe"
        if tiny or device.type != "cuda":
            argv[:0], what = ["--config", str(repo / "train" / "configs" / "diffusion-pairs-tiny.yaml")], "tiny preset"
        else:
            defaults = script.DiffusionPairsConfig()
            files = [(defaults.model, "model_index.json"), (defaults.controlnet, "config.json")]
            files.append((defaults.segmenter, "config.json"))
            if not all(isinstance(try_to_load_from_cache(name, file), str) for name, file in files):
                model, controlnet = save_tiny_stable_diffusion(Path(tmp) / "sd15", layout=SD15_LAYOUT_CONFIG)
                argv += ["--model", str(model), "--controlnet", str(controlnet)]
                argv += ["--segmenter", "tiny", "--max_lbce", "9", "--min_classes", "0"]
                what = "SD 1.5 layout, random weights"
        config = parse_config(script.DiffusionPairsConfig, argv)
        for sub in ("data", ".progress"):
            (Path(out) / sub).mkdir(parents=True, exist_ok=True)
        maker = DiffusionPairMaker(config, Path(out), device, photo_source(config), Path(tmp) / "tiny")
        print(f"\n== diffusion pairs: {what}, {config.resolution} px, {config.num_inference_steps} steps x strength "
              f"{config.strength}, batch {config.batch_size} ==")  # fmt: skip
        reset_peak(device)
        seconds = timed(lambda: maker.make_block(1), device, reps) / config.block_size
        print(f"{'photo -> pair + L_BCE + edge score':44s} {seconds:8.3f} s/pair  "
              f"{seconds * 1000 / 3600:9.2f} h per 1,000 pairs  ({peak_mb(device)})")  # fmt: skip


STEPS: dict[str, Callable[[Check], None]] = {
    "parity": step_parity,
    "video": step_video,
    "diffusion": step_diffusion_pairs,
    "training": step_training,
}


def paper_segmenter():
    """Mask2Former with the paper's Swin-B 384 layout and the 150 ADE20K labels, random weights."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    from scenimefy.models.segmenter import SemanticSegmenter

    swin = SwinConfig(
        image_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    labels = {i: f"class{i}" for i in range(150)}
    config = Mask2FormerConfig(backbone_config=swin, id2label=labels, label2id={v: k for k, v in labels.items()})
    return SemanticSegmenter(Mask2FormerForUniversalSegmentation(config).eval())


def stage_translator(run: StageRun) -> None:
    """Stage 3: the semi-supervised translator, one D and one G update on 256 px crops."""
    from scenimefy.training.translator import LossSettings, build_networks, train_step

    acc = run.accelerator
    settings = LossSettings() if not run.tiny else LossSettings(num_patches=16, nce_layers=(0, 4, 8, 12, 13))
    translator = {"ngf": 8, "n_blocks": 2} if run.tiny else {}
    nets = build_networks(settings, translator, ndf=8 if run.tiny else 64, embed_dim=16 if run.tiny else 256)
    names = [
        n for n in ("generator", "disc_unpaired", "disc_paired", "patch_head", "style_patch_head") if getattr(nets, n)
    ]
    for n in names:
        getattr(nets, n).to(run.device)
    g3 = torch.optim.Adam([p for m in nets.generator_side() for p in m.parameters()], lr=2e-4, betas=(0.5, 0.999))
    d3 = torch.optim.Adam([p for m in nets.discriminators() for p in m.parameters()], lr=2e-4, betas=(0.5, 0.999))
    prepared = run.prepare(*[getattr(nets, n) for n in names], g3, d3)
    for n, module in zip(names, prepared):
        setattr(nets, n, module)
    g3, d3 = prepared[len(names)], prepared[len(names) + 1]
    crop = 32 if run.tiny else 256
    data = {
        k: torch.rand(1, 3, crop, crop, device=run.device) * 2 - 1 for k in ("real", "anime", "pair_real", "pair_anime")
    }

    def step() -> dict[str, torch.Tensor]:
        logs = train_step(nets, g3, d3, data, 1, 20, settings, backward=acc.backward, autocast=acc.autocast)
        return {k: torch.tensor(float(v)) for k, v in logs.items()}

    run.measure(f"stage 3 translator step, {crop} px crops", step)


TRAINING_STAGES: list[Callable[[StageRun], None]] = [stage_stylegan, stage_finetune, stage_pairs, stage_translator]


def run_stages(tiny: bool, reps: int) -> int:
    """The training stages in this process (started by ``accelerate launch`` from ``step_training``)."""
    from accelerate import Accelerator

    acc = Accelerator()
    amp = "autocast " + str(acc.mixed_precision) if acc.native_amp else "no autocast (fp32)"
    scaler = f", GradScaler at {acc.scaler.get_scale():g}" if acc.scaler is not None else ""
    print(f"accelerate: --mixed_precision {acc.mixed_precision} on {acc.device}: {amp}{scaler}", flush=True)
    run = StageRun(acc, tiny, reps, batch=2 if tiny else 4)
    for stage in TRAINING_STAGES:
        stage(run)
        sys.stdout.flush()
    for message in run.failures:
        print(f"FAILED: {message}")
    return 1 if run.failures else 0


# ------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny networks and sizes (any CPU, ~1-2 min)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="an authors' net_G.pth (default: parity)")
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)  # the accelerate child
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reps = args.reps or (5 if device.type == "cuda" else 1)
    if args.tiny and device.type == "cpu":
        # Tiny ops on a busy machine: OpenMP threads waiting on each other cost 10-20x (seen on
        # 2 shared cores); the tiny figures only show that every step runs.
        torch.set_num_threads(1)
    if args.stages:
        return run_stages(args.tiny, reps)
    print(cpu_line())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(
            f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"torch {torch.__version__} CUDA {torch.version.cuda}"
        )
    elif not args.tiny:
        print("no CUDA device: paper sizes on a CPU take a long time; --tiny checks that every step runs")
    unknown = set(args.steps.split(",")) - STEPS.keys()
    if unknown:
        parser.error(f"unknown steps {', '.join(sorted(unknown))}: choose from {', '.join(STEPS)}")
    check = Check(device, args.tiny, reps, args.weights)
    started = time.perf_counter()
    for name, step in STEPS.items():
        if name in args.steps.split(","):
            step(check)
            sys.stdout.flush()
    print(
        f"\ndone in {time.perf_counter() - started:.0f} s: "
        + (f"{len(check.failures)} failed" if check.failures else "all passed")
    )
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
