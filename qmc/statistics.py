"""Error bars of correlated Monte Carlo series: the blocking (reblocking) analysis.

Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989): averaging neighbouring pairs of a correlated
series leaves its mean unchanged, and the naive standard error of the blocked series grows until the
blocks are longer than the autocorrelation time, then plateaus at the true error. We take the
plateau with the rule of Lee, Drummond, Needs, Phys. Rev. E 83, 066706 (2011), eq. 14: the smallest block length B with B^3 > 2 N tau^2, tau estimated from the blocked variance;
where no level qualifies, the largest error among levels with at least ``min_blocks`` blocks.
"""

from __future__ import annotations

import numpy as np


def blocking_levels(series) -> list[tuple[int, float, float]]:
    """(block_length, n_blocks, standard error) at every blocking level with >= 2 blocks."""
    x = np.asarray(series, dtype=np.float64)
    levels = []
    length = 1
    while x.size >= 2:
        levels.append((length, x.size, float(np.std(x, ddof=1) / np.sqrt(x.size))))
        if x.size % 2:
            x = x[:-1]
        x = 0.5 * (x[0::2] + x[1::2])
        length *= 2
    return levels


def blocking_error(series, min_blocks: int = 16) -> tuple[float, float]:
    """(mean, standard error of the mean) of a correlated 1-D series by reblocking.

    >>> mean, error = blocking_error(np.random.default_rng(0).normal(size=4096))
    >>> abs(error - 1 / 64) < 0.003
    True
    """
    x = np.asarray(series, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()) if x.size else float("nan"), float("nan")
    levels = blocking_levels(x)
    naive = levels[0][2]
    n = x.size
    for length, n_blocks, error in levels:
        # Lee et al. eq. 14: block length B is enough once B^3 > 2 N (sigma_B / sigma_1)^4
        if length**3 > 2 * n * (error / naive) ** 4:
            return float(x.mean()), error
    usable = [error for _, n_blocks, error in levels if n_blocks >= min_blocks] or [naive]
    return float(x.mean()), float(max(usable))
