"""The many-particle (mean-field) limit: the particle measure at a fixed time approaches a
limit as m grows.

For one network (ReLU teacher–student, GD on a training set) and one deconvolution problem
(BLASSO, forward–backward), the flow runs from μ0 with m particles — m i.i.d. draws of the
admissible law (uniform on the unit sphere; a uniformly shifted grid at r = 0 for spikes) —
with one step size η for every m, and the measures μ_m(t) = Σ_i (1/m) δ_{θ_i(t)} at the
times t = η·k (the same iteration counts k for every m) are compared with a reference run of
M ≫ m particles by the Wasserstein distance on Θ:

    W₂(μ, ν)² = min over couplings π of (μ, ν) of Σ_ij π_ij d(θ_i, θ'_j)²,

d the Euclidean distance (the position of a spike on the torus). Output weights are
coordinates of θ, so a signed network or signed spike measure is compared through its lift
to Θ. The fitted slope of log W₂ against log m (on the medians over draws) is the observed
rate; the reference's own distance to the limit, about W₂ at m = M, bounds what the largest
m can show.

Tables: ``distances.csv`` (problem, iteration, time, m, draw, w2), ``rates.csv`` (problem,
iteration, time, slope, intercept), ``setup.csv`` (problem, quantity, value) and
``objective.csv`` (problem, iteration, time, objective of the reference run).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from ..errors import ValidationError
from .params import parse
from .tables import read_table, write_table

NAME = "mean_field_limit"
ORDER = 40  # place in the report (experiments.registry)
TITLE = "Many-particle limit"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sizes(_Strict):
    """The particle counts ``particles`` (≥ 2 distinct: a slope is fitted), ``draws`` runs
    of each, a reference of ``reference`` particles, compared every ``segment`` iterations
    for ``segments`` segments."""

    particles: list[PositiveInt] = Field(min_length=2)
    reference: PositiveInt
    draws: PositiveInt
    segment: PositiveInt
    segments: PositiveInt

    @model_validator(mode="after")
    def _reference_is_largest(self):
        if len(set(self.particles)) < 2:
            raise ValueError(f"particles={self.particles} needs at least two distinct sizes to fit a rate")
        if max(self.particles) >= self.reference:
            raise ValueError(f"reference={self.reference} must exceed every m in particles={self.particles}")
        return self


class NetworkProblem(_Sizes):
    """GD on a ReLU teacher–student training set (d = 1 with a bias)."""

    teacher_units: PositiveInt
    train_size: PositiveInt


class DeconvolutionProblem(_Sizes):
    """Forward–backward on BLASSO with weight ``lam`` for a signal of ``spikes`` spikes."""

    spikes: PositiveInt
    cutoff: PositiveInt
    lam: PositiveFloat


class Params(_Strict):
    """One preset entry of the many-particle-limit experiment: one set per problem."""

    network: NetworkProblem
    deconvolution: DeconvolutionProblem

# The exact W₂ distances (POT's network simplex on an m × M cost matrix) dominate the time
# and grow faster than m·M: with M = 16 × the largest m the reference's own error (about W₂
# at m = M) is 16^slope of the largest m's — a quarter at slope −1/2 — and the paper preset
# runs in minutes (one distance for m = 512 against M = 8192 costs about 11 times one for
# m = 256 against M = 4096).
PRESETS = {
    "test": {
        "network": {"teacher_units": 3, "train_size": 100, "particles": [4, 16], "reference": 128,
                    "draws": 2, "segment": 20, "segments": 2},
        "deconvolution": {"spikes": 2, "cutoff": 6, "lam": 1.0, "particles": [4, 16], "reference": 128,
                          "draws": 2, "segment": 20, "segments": 2},
    },
    "quick": {
        "network": {"teacher_units": 3, "train_size": 300, "particles": [16, 32, 64, 128], "reference": 2048,
                    "draws": 3, "segment": 100, "segments": 2},
        "deconvolution": {"spikes": 3, "cutoff": 8, "lam": 1.0, "particles": [16, 32, 64, 128], "reference": 2048,
                          "draws": 3, "segment": 50, "segments": 2},
    },
    "paper": {
        "network": {"teacher_units": 3, "train_size": 500, "particles": [16, 32, 64, 128, 256],
                    "reference": 4096, "draws": 5, "segment": 100, "segments": 3},
        "deconvolution": {"spikes": 3, "cutoff": 8, "lam": 1.0, "particles": [16, 32, 64, 128, 256],
                          "reference": 4096, "draws": 5, "segment": 50, "segments": 3},
    },
}

PROBLEMS = ("network", "deconvolution")


# -- Wasserstein distance -------------------------------------------------------------------

def cost_matrix(x: np.ndarray, y: np.ndarray, periodic=None) -> np.ndarray:
    """Squared distances |x_i − y_j|² (n, k) for points x (n, p), y (k, p); the coordinates
    flagged in ``periodic`` (p booleans) live on the circle [0, 1) (wrap-around distance)."""
    diff = np.abs(x[:, None, :] - y[None, :, :])
    if periodic is not None:
        flags = np.asarray(periodic, dtype=bool)
        wrapped = diff[..., flags] % 1.0
        diff[..., flags] = np.minimum(wrapped, 1.0 - wrapped)
    return np.sum(diff**2, axis=-1)


def _masses(name: str, masses, n: int) -> np.ndarray:
    w = np.full(n, 1.0 / n) if masses is None else np.asarray(masses, dtype=float)
    if w.shape != (n,):
        raise ValidationError(f"{name} must have one mass per point ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValidationError(f"{name} must be finite, nonnegative and not all zero")
    return w


def _import_ot():
    """POT, without its PyTorch/JAX/TensorFlow/CuPy backends: only NumPy arrays go in, and
    importing torch alone can take seconds (the variables only affect POT's first import)."""
    import os

    for framework in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{framework}", "1")
    import ot

    return ot


def wasserstein(x, y, a=None, b=None, *, periodic=None, max_iterations: int = 10**8) -> float:
    """W₂ between μ = Σ_i a_i δ_{x_i} and ν = Σ_j b_j δ_{y_j} (exact, by POT's network
    simplex ``ot.emd2``); x (n, p), y (k, p); masses default to uniform and must have equal
    totals. ``periodic``: which coordinates are on the torus [0, 1)."""
    ot = _import_ot()
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValidationError(f"points must have shapes (n, p) and (k, p), got {x.shape} and {y.shape}")
    if periodic is not None and len(periodic) != x.shape[1]:
        raise ValidationError(f"periodic needs one flag per coordinate ({x.shape[1]}), got {len(periodic)}")
    a, b = _masses("a", a, len(x)), _masses("b", b, len(y))
    if not np.isclose(a.sum(), b.sum(), rtol=1e-9, atol=0):
        raise ValidationError(f"the measures have different total masses ({a.sum():.12g} and {b.sum():.12g})")
    total = a.sum()
    cost, log = ot.emd2(a / total, b / b.sum(), cost_matrix(x, y, periodic), numItermax=max_iterations, log=True)
    if log.get("warning"):
        raise ValidationError(f"optimal transport did not converge: {log['warning']}")
    return float(np.sqrt(max(float(cost), 0.0) * total))


# -- the flows ------------------------------------------------------------------------------

def _network(p: dict, seed: int):
    import measureflow as mf

    teacher = mf.data.TeacherStudent(1, p["teacher_units"], "relu", bias=True, seed=seed)
    problem = mf.Problem(teacher.teacher_feature, "square", None, teacher.training_set(p["train_size"], seed=seed))
    return problem, "gd", None


def _deconvolution(p: dict, seed: int):
    import measureflow as mf
    from measureflow.deconvolution import blasso

    signal = mf.data.SpikeSignal(spikes=p["spikes"], dim=1, cutoff=p["cutoff"], seed=seed)
    problem = blasso(signal, p["lam"])
    return problem, "fb", [False, True]  # θ = (r, t): t on the torus


_PROBLEMS = {"network": _network, "deconvolution": _deconvolution}


def _keys(seed: int, count: int):
    import jax

    base = jax.random.PRNGKey(seed)
    return [jax.random.fold_in(base, i) for i in range(count)]


def flow_snapshots(problem, inits: list, method: str, step: float, segment: int, segments: int) -> list[np.ndarray]:
    """Positions (segments + 1, m, p) at iterations 0, segment, 2·segment, … of the flow
    from each particle set of ``inits`` (one compiled, vmapped program: ``mf.solve_batch``)."""
    import measureflow as mf

    current = list(inits)
    snaps = [[np.asarray(mu.positions)] for mu in current]
    for _ in range(segments):
        results = mf.solve_batch(problem, current, method, step=step, iterations=segment, snapshots=0)
        for k, res in enumerate(results):
            if int(res.diverged_at) >= 0:
                raise ValidationError(f"the {method} run with m = {current[k].m} diverged; lower the step")
        current = [res.particles for res in results]
        for k, mu in enumerate(current):
            snaps[k].append(np.asarray(mu.positions))
    return [np.stack(s) for s in snaps]


def initial_sets(feature, m: int, draws: int, keys) -> list:
    """``draws`` independent admissible particle sets of m particles (masses 1/m). For the
    i.i.d. law of a fully homogeneous feature (uniform on the sphere) one draw of m·draws
    particles is split in ``draws`` sets — the same law, one sampling call instead of
    ``draws``; otherwise (a shifted grid) one call per set with ``keys[d]``."""
    import measureflow as mf

    if feature.homogeneity.kind == "full":
        P = np.asarray(mf.init.admissible(feature, m * draws, key=keys[0]).positions)
        return [mf.Particles(P[d * m:(d + 1) * m]) for d in range(draws)]
    return [mf.init.admissible(feature, m, key=keys[d]) for d in range(draws)]


def size_groups(sizes: list[int], ratio: float = 2.0) -> list[list[int]]:
    """Indices of ``sizes`` grouped for batching, from the largest m down: a size joins the
    current group while padding every run of the group to its largest m costs at most
    ``ratio`` times the group's own work (Σ m), so few compilations and little padding."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and sizes[groups[-1][0]] * (len(groups[-1]) + 1) <= ratio * (
                sum(sizes[j] for j in groups[-1]) + sizes[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def run_problem(name: str, p: dict, seed: int, progress) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The flows and distances for one problem: (distances, setup, objective) tables."""
    import measureflow as mf

    sizes = [int(m) for m in p["particles"]]
    if max(sizes) >= p["reference"]:
        raise ValidationError(f"reference={p['reference']} must exceed every m in particles={sizes}")
    problem, method, periodic = _PROBLEMS[name](p, seed)
    keys = _keys(seed, len(sizes) * p["draws"] + 1)
    reference0 = mf.init.admissible(problem.feature, p["reference"], key=keys[-1])
    step = mf.default_step(problem, reference0, method=method)  # one η for every m
    inits = [mu for j, m in enumerate(sizes)
             for mu in initial_sets(problem.feature, m, p["draws"], keys[j * p["draws"]:(j + 1) * p["draws"]])]
    groups = size_groups(sizes)
    steps = 2 + len(groups)
    progress(f"{NAME}: {name} flows (M = {p['reference']})", 0, steps)
    (reference,) = flow_snapshots(problem, [reference0], method, step, p["segment"], p["segments"])
    runs = [None] * len(inits)
    for j, group in enumerate(groups):
        # one batch per group of sizes: each batch is one compilation, and padding the smaller
        # runs of a group to its largest m at most doubles the work (see size_groups)
        progress(f"{NAME}: {name} flows (m = {', '.join(str(sizes[i]) for i in group)})", 1 + j, steps)
        index = [i * p["draws"] + d for i in group for d in range(p["draws"])]
        for i, snaps in zip(index, flow_snapshots(problem, [inits[i] for i in index], method, step, p["segment"],
                                                  p["segments"])):
            runs[i] = snaps
    progress(f"{NAME}: {name} distances", steps - 1, steps)
    iterations = np.arange(p["segments"] + 1) * p["segment"]
    rows = []
    for k, it in enumerate(iterations):
        for j, m in enumerate(sizes):
            for d in range(p["draws"]):
                w2 = wasserstein(runs[j * p["draws"] + d][k], reference[k], periodic=periodic)
                rows.append((name, int(it), float(it * step), m, d, w2))
    distances = pd.DataFrame(rows, columns=["problem", "iteration", "time", "m", "draw", "w2"])
    objective = pd.DataFrame({"problem": name, "iteration": iterations, "time": iterations * step,
                              "objective": [float(problem.objective(mf.Particles(P))) for P in reference]})
    setup = pd.DataFrame({"problem": name, "quantity": ["step", "reference", "draws", "method"],
                          "value": [step, p["reference"], p["draws"], method]})
    return distances, setup, objective


def fit_rates(distances: pd.DataFrame) -> pd.DataFrame:
    """Slope and intercept of log(median W₂ over draws) against log m, per problem and time."""
    from ..plotting.rates import fit_power_law

    rows = []
    for (problem, it, t), g in distances.groupby(["problem", "iteration", "time"], sort=False):
        med = g.groupby("m")["w2"].median()
        slope, c = fit_power_law(med.index.to_numpy(), med.to_numpy())
        rows.append((problem, it, t, slope, c))
    return pd.DataFrame(rows, columns=["problem", "iteration", "time", "slope", "intercept"])


def run(out_dir: pathlib.Path, params: dict, seed: int, progress) -> None:
    """Run both problems' flows for every m and write the distance and rate tables."""
    checked = parse(Params, params, NAME)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [run_problem(name, getattr(checked, name).model_dump(), seed, progress) for name in PROBLEMS]
    distances = pd.concat([t[0] for t in tables], ignore_index=True)
    write_table(out_dir, "distances", distances)
    write_table(out_dir, "setup", pd.concat([t[1] for t in tables], ignore_index=True))
    write_table(out_dir, "objective", pd.concat([t[2] for t in tables], ignore_index=True))
    write_table(out_dir, "rates", fit_rates(distances))
    progress(f"{NAME}: done", 1, 1)


# -- figure from the tables -----------------------------------------------------------------

_LABELS = {"network": "ReLU network, GD", "deconvolution": "spike deconvolution, forward–backward"}


def plot(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Redraw the W₂-versus-m figure from the tables in ``out_dir``."""
    from ..plotting.figures import new_figure, save_figure
    from matplotlib.ticker import NullLocator

    from ..plotting.rates import rate_plot

    out_dir = pathlib.Path(out_dir)
    distances, rates, setup = (read_table(out_dir, n) for n in ("distances", "rates", "setup"))
    problems = list(dict.fromkeys(distances["problem"]))
    fig, axes = new_figure(5.2 * len(problems), 4.4, ncols=len(problems), squeeze=False)
    for ax, name in zip(axes[0], problems):
        d = distances[distances["problem"] == name]
        r = rates[rates["problem"] == name]
        its = sorted(d["iteration"].unique())
        colors = _colors(len(its))
        for color, it in zip(colors, its):
            g = d[d["iteration"] == it]
            table = g.pivot_table(index="m", columns="draw", values="w2", aggfunc="first").sort_index()
            fit = r[r["iteration"] == it].iloc[0]
            rate_plot(ax, table.index.to_numpy(), table.to_numpy(), color=color, slope=fit["slope"],
                      intercept=fit["intercept"], label=f"t = {fit['time']:.3g} (k = {it}): slope {fit['slope']:.2f}")
        ref = setup[(setup["problem"] == name) & (setup["quantity"] == "reference")]["value"].iloc[0]
        ax.set_title(f"{_LABELS.get(name, name)} (reference M = {int(float(ref))})", fontsize=10)
        ax.set_xticks(sorted(d["m"].unique()), [str(m) for m in sorted(d["m"].unique())])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("number of particles m")
        ax.set_ylabel("W₂(μ_m(t), μ_M(t))")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir, "mean_field_limit")


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.85, n)]


def summarize(out_dir: pathlib.Path) -> str:
    """One paragraph reading the W₂-versus-m figure, numbers from the tables."""
    out_dir = pathlib.Path(out_dir)
    distances, rates, setup = (read_table(out_dir, n) for n in ("distances", "rates", "setup"))
    parts = []
    for name in dict.fromkeys(distances["problem"]):
        d = distances[distances["problem"] == name]
        r = rates[rates["problem"] == name]
        ref = int(float(setup[(setup["problem"] == name) & (setup["quantity"] == "reference")]["value"].iloc[0]))
        sizes = sorted(d["m"].unique())
        last = d[d["iteration"] == d["iteration"].max()].groupby("m")["w2"].median()
        slopes = ", ".join(f"{s:.2f} at t = {t:.3g}" for t, s in zip(r["time"], r["slope"]))
        parts.append(
            f"For the {_LABELS.get(name, name)}, the median W₂ distance to the M = {ref} reference at the last time "
            f"falls from {last.iloc[0]:.3g} at m = {sizes[0]} to {last.iloc[-1]:.3g} at m = {sizes[-1]}; the fitted "
            f"log-log slopes are {slopes}.")
    return (" ".join(parts) + " A slope near −1/2 is the Monte-Carlo rate of i.i.d. particles; a uniform grid "
            "(the spikes' μ0) starts at rate −1 in one dimension; the reference's own error flattens the "
            "curves as m approaches M.")
