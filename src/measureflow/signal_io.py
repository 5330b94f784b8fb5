"""A user's own samples on a uniform grid of the torus, read for `measureflow deconvolve`.

Accepted: NPY (a 1-D vector or a 2-D image), CSV of one column (a 1-D vector), CSV of two
columns ``x, value`` (1-D samples with their positions, which must be the uniform periodic
grid x_j = x_0 + j/N of [0, 1)), or CSV of more columns (a 2-D image). Samples sit at
x_j = j/N per axis; every check raises a one-line ValidationError.
"""

from __future__ import annotations

import pathlib

import numpy as np

from .data.base import FixedDesign
from .data.spikes import check_grid, grid_points
from .errors import ValidationError


def read_samples(path) -> tuple[np.ndarray, float]:
    """(samples: (N,) or (N₀, N₁), offset x_0 of the 1-D grid) from ``path``."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValidationError(f"signal file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise ValidationError(f"signal file {str(p)!r} is empty")
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            arr = np.loadtxt(p, delimiter=",", ndmin=2, comments="#")
            if arr.shape[1] == 1:
                arr = arr[:, 0]
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser's message, on one line
        raise ValidationError(f"cannot read {str(p)!r} as numbers (CSV or NPY): {' '.join(str(exc).split())}") from None
    arr = np.asarray(arr, dtype=float)
    if arr.size == 0:
        raise ValidationError(f"signal file {str(p)!r} holds no samples")
    if arr.ndim not in (1, 2):
        raise ValidationError(f"the signal must be a 1-D vector or a 2-D image, got a {arr.ndim}-D array {arr.shape}")
    x0 = 0.0
    if p.suffix.lower() != ".npy" and arr.ndim == 2 and arr.shape[1] == 2:
        x, arr = arr[:, 0], arr[:, 1]
        if not np.all(np.isfinite(x)):
            raise ValidationError("the sample positions (first CSV column) contain NaN or inf")
        N = len(x)
        if N < 2 or not np.allclose(np.diff(x), 1.0 / N, rtol=1e-6, atol=1e-12):
            raise ValidationError(f"the sample positions are not the uniform periodic grid of [0, 1) "
                                  f"(x_j = x_0 + j/N, spacing 1/N = {1.0 / max(N, 1):.6g}): the torus needs it")
        x0 = float(x[0])
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"the signal contains {int(np.sum(~np.isfinite(arr)))} NaN or inf sample(s)")
    return arr, x0


def signal_design(samples: np.ndarray, kernel, offset: float = 0.0) -> FixedDesign:
    """The FixedDesign of samples on the uniform grid (each axis checked against the kernel:
    N > 2K)."""
    d = samples.ndim
    for a, N in enumerate(samples.shape):
        try:
            check_grid(N, kernel)
        except ValidationError as exc:
            raise ValidationError(f"axis {a} of the signal has N={N} samples: {exc}") from None
    if d == 2 and samples.shape[0] != samples.shape[1]:
        X = np.stack([g.ravel() for g in np.meshgrid(*[np.arange(N) / N for N in samples.shape],
                                                      indexing="ij")], axis=1)
    else:
        X = grid_points(samples.shape[0], d)
    return FixedDesign(np.mod(X + offset, 1.0), samples.ravel())


def deconvolve_signal(path, *, kernel: str, cutoff=None, sigma=None, lam: float, out, tol: float = 1e-8) -> str:
    """Read, check, :func:`~measureflow.deconvolution.deconvolve`, and write ``spikes.csv``
    (position(s), amplitude), ``certificate.json`` (gap, sup|η|, status, time) and
    ``deconvolution.png`` into ``out``; returns the one-line summary."""
    import json
    import time

    from .deconvolution import deconvolve
    from .features.spikes import Spikes
    from .kernels import Dirichlet, Gaussian
    from .problem import Problem
    from .regularizers import L1
    from .validation import check_real

    if kernel not in ("dirichlet", "gaussian"):
        raise ValidationError(f"--kernel={kernel!r} is not one of 'dirichlet', 'gaussian'")
    if kernel == "dirichlet":
        if cutoff is None or sigma is not None:
            raise ValidationError("--kernel dirichlet takes --cutoff FC (and no --sigma)")
        kern = Dirichlet(cutoff)
    else:
        if sigma is None or cutoff is not None:
            raise ValidationError("--kernel gaussian takes --sigma S (and no --cutoff)")
        kern = Gaussian(sigma)
    lam = check_real("lam", lam, positive=True)
    tol = check_real("tol", tol, positive=True)
    samples, x0 = read_samples(path)
    data = signal_design(samples, kern, x0)
    problem = Problem(Spikes(kern, samples.ndim), "square", L1(lam), data)
    t0 = time.perf_counter()
    res = deconvolve(problem, tol=tol)
    wall = time.perf_counter() - t0
    outdir = pathlib.Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    d = samples.ndim
    est = res.spikes
    header = ",".join(["t"] if d == 1 else ["t1", "t2"]) + ",amplitude"
    np.savetxt(outdir / "spikes.csv", np.column_stack([est.positions, est.amplitudes]).reshape(-1, d + 1),
               delimiter=",", header=header, comments="", fmt="%.17g")
    cert = {"status": res.status, "relative_gap": res.gap.relative, "gap": res.gap.gap,
            "objective": res.gap.objective, "dual": res.gap.dual, "sup_eta": res.gap.sup_eta,
            "spikes": len(est), "time_s": wall, "lam": lam, "tol": tol, "kernel": repr(kern)}
    (outdir / "certificate.json").write_text(json.dumps(cert, indent=2) + "\n")
    _figure(problem, res, samples, outdir / "deconvolution.png")
    return (f"{res.status}: {len(est)} spikes, relative gap {res.gap.relative:.2e}, sup|eta| "
            f"{res.gap.sup_eta:.12f}, {wall:.2f} s -> {outdir}")


def _figure(problem, res, samples, path):
    """Observation, reconstruction ψ*ν and spikes; |η| (1-D: curves; 2-D: images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .certificates import eta_function

    d = samples.ndim
    fit = np.asarray(problem.predict(res.particles)).reshape(samples.shape)
    eta = eta_function(problem, res.particles)
    est = res.spikes
    if d == 1:
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        x = np.arange(len(samples)) / len(samples)
        ax0.plot(x, samples, ".", ms=3, label="observation")
        ax0.plot(x, fit, "-", lw=1, label="reconstruction ψ*ν")
        if len(est):
            ax0.stem(est.positions[:, 0], est.amplitudes, linefmt="C3-", markerfmt="C3o", basefmt=" ",
                     label="spikes")
        ax0.legend(fontsize=8)
        t = np.linspace(0, 1, 2000, endpoint=False)
        ax1.plot(t, np.abs(np.asarray(eta(t[:, None]))), lw=1)
        ax1.axhline(1.0, color="k", lw=0.5, ls="--")
        ax1.set_ylabel("|η|")
        ax1.set_xlabel("t")
    else:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
        for ax, img, title in ((axes[0], samples, "observation"), (axes[1], fit, "reconstruction ψ*ν")):
            ax.imshow(img.T, origin="lower", extent=(0, 1, 0, 1))
            ax.set_title(title)
        g = 128
        T = np.stack([a.ravel() for a in np.meshgrid(np.arange(g) / g, np.arange(g) / g, indexing="ij")], axis=1)
        im = axes[2].imshow(np.abs(np.asarray(eta(T))).reshape(g, g).T, origin="lower", extent=(0, 1, 0, 1))
        fig.colorbar(im, ax=axes[2])
        axes[2].set_title("|η|")
        for ax in axes:
            if len(est):
                ax.scatter(est.positions[:, 0], est.positions[:, 1], c="r", s=12, marker="x")
    fig.suptitle(f"{res.status}: relative gap {res.gap.relative:.1e}, {len(est)} spikes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
