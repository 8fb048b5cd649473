"""Edge alignment: does a translated image keep the photo's structure?

``canny(image)`` is OpenCV's Canny detector on the grey image (the control image of the diffusion
pairs, and the edges compared here). ``edge_alignment(photo, anime)`` is the F-score of the two
edge maps with a distance tolerance, as boundary benchmarks score contours (BSDS): an anime edge
pixel is a hit when a photo edge lies within ``tolerance`` pixels (precision), a photo edge pixel
is recovered when an anime edge lies that close (recall), and F = 2PR / (P + R). Identical edges
score 1; edges that have nothing to do with each other score near the fraction of the image that
the dilated edges cover. Two images without any edge score 1 (nothing was lost), one without
edges against one with them scores 0.
"""

from __future__ import annotations

import numpy as np

#: Canny hysteresis thresholds (on 0..255 grey levels) of ControlNet's canny training data.
CANNY_LOW, CANNY_HIGH = 100, 200


def canny(image: np.ndarray, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> (H, W) bool edge map."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.Canny(np.ascontiguousarray(grey, dtype=np.uint8), low, high) > 0


def _near(edges: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels within ``tolerance`` (chessboard distance) of an edge pixel."""
    import cv2

    if tolerance <= 0:
        return edges
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    return cv2.dilate(edges.astype(np.uint8), kernel) > 0


def edge_f_score(reference: np.ndarray, candidate: np.ndarray, tolerance: int = 2) -> float:
    """F-score of two (H, W) bool edge maps with a tolerance of ``tolerance`` pixels."""
    if reference.shape != candidate.shape:
        raise ValueError(f"edge maps differ in shape: {reference.shape} vs {candidate.shape}")
    n_ref, n_cand = int(reference.sum()), int(candidate.sum())
    if n_ref == 0 or n_cand == 0:
        return 1.0 if n_ref == n_cand else 0.0
    precision = float((candidate & _near(reference, tolerance)).sum()) / n_cand
    recall = float((reference & _near(candidate, tolerance)).sum()) / n_ref
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def edge_alignment(photo: np.ndarray, anime: np.ndarray, tolerance: int = 2) -> float:
    """Edge F-score of two (H, W, 3) uint8 images of the same size (1: the same edges)."""
    return edge_f_score(canny(photo), canny(anime), tolerance)
