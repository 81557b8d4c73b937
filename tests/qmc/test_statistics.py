"""Blocking analysis against series with known error bars."""
import numpy as np

from qmc.statistics import blocking_error


def test_uncorrelated_series_gives_naive_error():
    x = np.random.default_rng(0).normal(size=8192)
    mean, error = blocking_error(x)
    assert abs(error - 1 / np.sqrt(8192)) < 0.15 / np.sqrt(8192)
    assert mean == x.mean()


def test_correlated_series_error_grows_to_true_value():
    """AR(1) with phi = 0.9: the error of the mean is sqrt((1 + phi) / (1 - phi)) = 4.36 x naive."""
    rng = np.random.default_rng(1)
    phi, n = 0.9, 1 << 15
    noise = rng.normal(size=n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    true_error = np.std(x) * np.sqrt((1 + phi) / (1 - phi) / n)
    _, error = blocking_error(x)
    naive = np.std(x, ddof=1) / np.sqrt(n)
    assert error > 3 * naive
    assert abs(error / true_error - 1) < 0.25  # the blocking estimate itself has ~10-20 % noise
