"""The transform matrices of Winograd's F(m x m, 3 x 3), built exactly (Toom-Cook, Lavin & Gray sec. 4).

For a chosen set of interpolation points (and the point at infinity), ``A^T`` (m x n), ``G``
(n x 3) and ``B^T`` (n x n), n = m + 2, are computed in exact rationals and rounded to float64
once. The points change the rounding error, not the cost (``inference.winograd`` uses them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import cache

import torch

#: Interpolation points per output tile size m (the point at infinity is always added). The
#: choice changes the rounding error, not the cost (Barabasz et al., "Error Analysis and
#: Improving the Accuracy of Winograd Convolution for Deep Neural Networks", TOMS 2020). F(3,3)
#: and F(4,3) use the best sets of a search over {0, +-1, +-2, +-1/2, +-3, +-1/3, +-3/2, +-2/3,
#: +-4, +-1/4} (bf16 GEMM operands, post-ReLU inputs): for F(4,3), 0, +-3/2, +-2/3 err 5.3x a
#: direct bf16 conv on average against 8.7x for Lavin & Gray's 0, +-1, +-2 (fp32: 2.2x vs 3.8x).
DEFAULT_POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    3: (Fraction(0), Fraction(1), Fraction(-2), Fraction(-1, 2)),
    4: (Fraction(0), Fraction(3, 2), Fraction(-3, 2), Fraction(2, 3), Fraction(-2, 3)),
    6: (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2), Fraction(2), Fraction(-2)),
    8: (
        Fraction(0),
        Fraction(1),
        Fraction(-1),
        Fraction(1, 2),
        Fraction(-1, 2),
        Fraction(2),
        Fraction(-2),
        Fraction(1, 4),
        Fraction(-4),
    ),
}


def _inverse(rows: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact inverse of a square matrix of fractions (Gauss-Jordan)."""
    n = len(rows)
    a = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(rows)]
    for c in range(n):
        p = next(r for r in range(c, n) if a[r][c] != 0)
        a[c], a[p] = a[p], a[c]
        pivot = a[c][c]
        a[c] = [v / pivot for v in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0:
                f = a[r][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [row[n:] for row in a]


@cache
def _matrices_exact(m: int, points: tuple[Fraction, ...]) -> tuple[list, list, list]:
    r = 3
    n = m + r - 1
    if len(points) != n - 1 or len(set(points)) != n - 1:
        raise ValueError(f"F({m},3) needs {n - 1} distinct finite points, got {points}")

    def vandermonde(k: int) -> list[list[Fraction]]:
        # Evaluation of a degree-(k-1) polynomial at the points; the point at infinity reads
        # its leading coefficient.
        return [[p**e for e in range(k)] for p in points] + [[Fraction(0)] * (k - 1) + [Fraction(1)]]

    # Linear convolution of an m-tap and an r-tap signal by evaluation / interpolation is
    # s = E_n^{-1} [(E_m a) (.) (E_r b)]; correlation -- what a conv layer computes -- is its
    # transpose (Lavin & Gray sec. 4): y = E_m^T [(E_r g) (.) (E_n^{-T} d)].
    e_m, g, e_n_inv = vandermonde(m), vandermonde(r), _inverse(vandermonde(n))
    a_t = [[e_m[j][i] for j in range(n)] for i in range(m)]
    b_t = [[e_n_inv[i][j] for i in range(n)] for j in range(n)]
    for j in range(n):  # integer B^T rows; their scale moves into G (same products)
        scale = math.lcm(*(v.denominator for v in b_t[j]))
        b_t[j] = [v * scale for v in b_t[j]]
        g[j] = [v / scale for v in g[j]]
    return a_t, g, b_t


def interpolation_points(m: int, points: Sequence[float | Fraction] | None) -> tuple[Fraction, ...]:
    # Floats like 2/3 become the small fraction they stand for, not their binary expansion.
    return tuple(Fraction(p).limit_denominator(1000) for p in (points if points is not None else DEFAULT_POINTS[m]))


def winograd_matrices(
    m: int, points: Sequence[float | Fraction] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A^T (m x n), G (n x 3), B^T (n x n) of F(m x m, 3 x 3) in float64, n = m + 2.

    ``points``: the n - 1 finite interpolation points (default :data:`DEFAULT_POINTS`); the
    matrices are exact rationals, rounded to float64 once.
    """
    mats = _matrices_exact(m, interpolation_points(m, points))
    return tuple(torch.tensor([[float(v) for v in row] for row in mat], dtype=torch.float64) for mat in mats)
