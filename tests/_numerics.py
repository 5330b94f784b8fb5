"""Numerical helpers shared by the tests (independent of measureflow)."""

import numpy as np


def central_diff(f, x, h=1e-6):
    """Central finite differences of a scalar function f at x (any shape)."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g
