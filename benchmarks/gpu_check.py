"""One short check of the toolkit on a GPU: inference latency, video frames/s, training steps/s.

    python benchmarks/gpu_check.py                 # on a CUDA machine: paper sizes, ~5 min
    python benchmarks/gpu_check.py --tiny          # anywhere (CPU): tiny sizes, keeps it correct
    make gpu-check                                 # the first, with the output in gpu-check.log

Parts (each prints one table row per measurement, with the peak device memory it took):

1. inference: a 1920x1080 frame and a 1024x1024 image through ``translate`` (fp16 on CUDA, the
   CPU's fast path on CPU) against the authors' path (fp32 eager ``model(x)``), parity weights;
2. video: ``stylize_video`` on the test clip (../shared/data/video/hanami.mp4), frames/s;
3. training: a few steps of each stage at the paper's sizes with random weights (nothing can be
   downloaded on the GPU machine either): StyleGAN2 G+D at 256 px (stage 1), the semantic-
   constrained fine-tuning step of G_t with a random ViT-B-32 CLIP and LPIPS (stage 1), pair
   generation = G_s + G_t + Mask2Former (Swin-B layout, random) on a batch (stage 2), and the
   semi-supervised translator step on 256 px crops (stage 3); steps/s after a warm-up step.

``--tiny`` shrinks every network and size so the whole script runs in a minute on a CPU; the
figures then only show that each part runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from common import SHARED, cpu_line

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.hub.convert import load_reference_translator
from scenimefy.inference import ScenimefyPipeline, choose_settings, translate
from scenimefy.inference.video import stylize_video
from scenimefy.models import ScenimefyTranslator, StyleGAN2Discriminator, StyleGAN2Generator

WEIGHTS = SHARED / "parity" / "net_G.pth"
CLIP = SHARED / "data" / "video" / "hanami.mp4"


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


def check_inference(device: torch.device, tiny: bool, reps: int) -> None:
    print("\n== inference: translate (fast path) vs the authors' path (fp32 eager) ==")
    if tiny:
        model, sizes = ScenimefyTranslator(ngf=8, n_blocks=2).eval().to(device), [(64, 96), (64, 64)]
    else:
        model, sizes = load_reference_translator(WEIGHTS).to(device), [(1080, 1920), (1024, 1024)]
    print(f"fast path: {choose_settings(device).reason}")
    for h, w in sizes:
        x = torch.rand(1, 3, h + -h % 4, w + -w % 4, device=device) * 2 - 1
        reset_peak(device)
        with torch.inference_mode():
            eager = timed(lambda x=x: model(x), device, reps)
        eager_mem = peak_mb(device)
        reset_peak(device)
        fast = timed(lambda x=x: translate(model, x), device, reps)
        print(
            f"{w}x{h}: eager fp32 {eager * 1e3:8.1f} ms ({eager_mem}), fast {fast * 1e3:8.1f} ms "
            f"({peak_mb(device)}): {eager / fast:.2f}x"
        )


def check_video(device: torch.device, tiny: bool) -> None:
    print("\n== video: stylize_video on the test clip ==")
    if not CLIP.is_file():
        print(f"skipped: {CLIP} not found")
        return
    if tiny:
        pipe = ScenimefyPipeline(ScenimefyTranslator(ngf=8, n_blocks=2).eval()).to(device)
        options = {"duration": 1.0, "max_side": 128}
    else:
        pipe = ScenimefyPipeline(load_reference_translator(WEIGHTS)).to(device)
        options = {}
    reset_peak(device)
    with tempfile.TemporaryDirectory() as folder:
        result = stylize_video(pipe, CLIP, Path(folder) / "out.mp4", progress=False, **options)
    print(
        f"{result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s: "
        f"{result.frames_per_second:.2f} frames/s ({peak_mb(device)})"
    )


def steps_per_second(name: str, step: Callable[[], object], device: torch.device, reps: int) -> None:
    reset_peak(device)
    seconds = timed(step, device, reps)
    print(f"{name:44s} {1 / seconds:8.2f} steps/s  {seconds * 1e3:9.1f} ms/step  ({peak_mb(device)})")


def stylegan_nets(device: torch.device, tiny: bool) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator, int]:
    size = 32 if tiny else 256
    config = {"channel_multiplier": 1, "channel_max": 32, "style_dim": 32, "n_mlp": 2} if tiny else {}
    g = StyleGAN2Generator(size=size, **config).to(device)
    d = StyleGAN2Discriminator(size=size, **{k: v for k, v in config.items() if k.startswith("channel")}).to(device)
    return g, d, size


def check_training(device: torch.device, tiny: bool, reps: int) -> None:
    from scenimefy.losses.clip import load_clip_image_encoder
    from scenimefy.losses.finetune import finetune_generator_loss, load_lpips
    from scenimefy.losses.stylegan2 import generator_nonsaturating_loss
    from scenimefy.training.stylegan import discriminator_step
    from scenimefy.training.tiny import TINY, clip_model_name, tiny_segmenter
    from scenimefy.training.translator import LossSettings, build_networks, train_step

    batch = 2 if tiny else 4
    print(f"\n== training: steps/s at {'tiny' if tiny else 'paper'} sizes, batch {batch} (stage 3: 1) ==")
    backward = torch.Tensor.backward

    # Stage 1: StyleGAN2 (G_s), one D step and one G step.
    g, d, size = stylegan_nets(device, tiny)
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    real = torch.rand(batch, 3, size, size, device=device) * 2 - 1

    def stylegan_step() -> None:
        z = torch.randn(batch, g.style_dim, device=device)
        fake = g(g.mapping(z))
        discriminator_step(d, d_opt, real, fake, backward)
        g_opt.zero_grad(set_to_none=True)
        generator_nonsaturating_loss(d(g(g.mapping(z)))).backward()
        g_opt.step()

    steps_per_second(f"stage 1 StyleGAN2 G+D step, {size} px", stylegan_step, device, reps)

    # Stage 1: fine-tuning G_t against G_s with the CLIP and LPIPS priors (random weights).
    clip = load_clip_image_encoder(clip_model_name(TINY if tiny else "ViT-B-32"), pretrained=None).to(device)
    lpips = load_lpips(pretrained=False).to(device)
    source = g

    def finetune_step() -> None:
        z = torch.randn(batch, g.style_dim, device=device)
        with torch.no_grad():
            x_p = source(source.mapping(z))
        y_p = g(g.mapping(z))
        patch = 8 if tiny else 64
        loss = finetune_generator_loss(d(y_p), x_p, y_p, clip, lpips, patch_size=patch)["loss"]
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()

    steps_per_second(f"stage 1 fine-tuning G_t step, {size} px", finetune_step, device, reps)

    # Stage 2: a batch of pseudo pairs scored by the segmenter.
    segmenter = tiny_segmenter() if tiny else paper_segmenter()
    segmenter = segmenter.to(device)

    @torch.no_grad()
    def pairs_step() -> None:
        z = torch.randn(batch, g.style_dim, device=device)
        w = g.mapping(z)
        segmenter.score_pairs(g(w), source(w))

    steps_per_second(f"stage 2 pair generation + L_BCE, {batch} pairs", pairs_step, device, reps)

    # Stage 3: the semi-supervised translator, one D and one G update on 256 px crops.
    settings = LossSettings() if not tiny else LossSettings(num_patches=16, nce_layers=(0, 4, 8, 12, 13))
    translator = {"ngf": 8, "n_blocks": 2} if tiny else {}
    nets = build_networks(settings, translator, ndf=8 if tiny else 64, embed_dim=16 if tiny else 256)
    for net in (nets.generator, *nets.discriminators(), nets.patch_head, nets.style_patch_head):
        if net is not None:
            net.to(device)
    gen_params = [p for n in (nets.generator, nets.patch_head, nets.style_patch_head) if n for p in n.parameters()]
    g3 = torch.optim.Adam(gen_params, lr=2e-4, betas=(0.5, 0.999))
    d3 = torch.optim.Adam([p for n in nets.discriminators() for p in n.parameters()], lr=2e-4, betas=(0.5, 0.999))
    crop = 32 if tiny else 256
    data = {
        k: torch.rand(1, 3, crop, crop, device=device) * 2 - 1 for k in ("real", "anime", "pair_real", "pair_anime")
    }
    steps_per_second(
        f"stage 3 translator step, {crop} px crops",
        lambda: train_step(nets, g3, d3, data, 1, 20, settings),
        device,
        reps,
    )


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
        argv = ["--photos", str(SHARED / "samples"), "--output_dir", tmp, "--block_size", "4", "--batch_size", "4"]
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
            (Path(tmp) / sub).mkdir(exist_ok=True)
        maker = DiffusionPairMaker(config, Path(tmp), device, photo_source(config), Path(tmp) / "tiny")
        print(f"\n== diffusion pairs: {what}, {config.resolution} px, {config.num_inference_steps} steps x strength "
              f"{config.strength}, batch {config.batch_size} ==")  # fmt: skip
        reset_peak(device)
        seconds = timed(lambda: maker.make_block(1), device, reps) / config.block_size
        print(f"{'photo -> pair + L_BCE + edge score':44s} {seconds:8.3f} s/pair  "
              f"{seconds * 1000 / 3600:9.2f} h per 1,000 pairs  ({peak_mb(device)})")  # fmt: skip


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny networks and sizes (any CPU, ~1 min)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--parts", default="inference,video,training", help="comma-separated parts to run")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reps = args.reps or (5 if device.type == "cuda" else 1)
    print(cpu_line())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch CUDA {torch.version.cuda}")
    elif not args.tiny:
        print("no CUDA device: paper sizes on a CPU take a long time; --tiny checks that every part runs")
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    if "inference" in parts:
        check_inference(device, args.tiny, reps)
    if "video" in parts:
        check_video(device, args.tiny)
    if "training" in parts:
        check_training(device, args.tiny, reps)
        check_diffusion_pairs(device, args.tiny, reps)
    print(f"\ndone in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
