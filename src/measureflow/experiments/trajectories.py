"""Trajectory figures: particles moving to the global minimizer.

- ``deconvolution``: forward–backward on 1-D sparse spike deconvolution (BLASSO): m spikes
  θ = (r, t) from r = 0 on a uniform grid; their paths in the (position t, weight r) plane,
  the true spikes, the spikes read off the final particles, and the duality gap.
- ``relu_gd``: full-batch GD on a ReLU teacher–student problem, m = 10 units θ = (w, b, a),
  input dimension 1 with a bias, so that (w, b) is planar: the paths of |a|·(w, b),
  coloured by sign(a), with the teacher's units and their rays.
- ``relu_sgd``: the same kind of teacher, m = 100, SGD with fresh samples on the
  population loss (whose exact value is the closed form for d = 1 with bias).

Tables (``out_dir``): ``<run>_paths.csv`` (iteration, particle, coordinates),
``<run>_history.csv`` (iteration, objective), ``relu_teacher.csv``/``<run>_teacher.csv``,
``deconvolution_truth.csv``, ``deconvolution_signal.csv``, ``deconvolution_recovered.csv``
and ``metrics.csv`` (run, metric, value). :func:`animate` draws ``<run>.gif`` (the particles
moving) from the paths and teacher/truth tables alone.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from ..errors import ValidationError
from .tables import paths_array, paths_table, read_table, write_table

NAME = "trajectories"
TITLE = "Particle trajectories"

_NETWORK = {"input_dim": 1, "bias": True, "teacher_units": 3}
PRESETS = {
    "test": {
        "deconvolution": {"spikes": 2, "cutoff": 6, "lam": 0.2, "noise": 0.0, "particles": 12,
                          "iterations": 300, "snapshots": 12},
        "relu_gd": {**_NETWORK, "particles": 10, "train_size": 200, "iterations": 300, "snapshots": 12},
        "relu_sgd": {**_NETWORK, "particles": 20, "batch_size": 16, "step": 0.5, "iterations": 300,
                     "snapshots": 12},
    },
    "quick": {
        "deconvolution": {"spikes": 4, "cutoff": 10, "lam": 0.2, "noise": 0.0, "particles": 32,
                          "iterations": 4000, "snapshots": 80},
        "relu_gd": {**_NETWORK, "particles": 10, "train_size": 1000, "iterations": 5000, "snapshots": 80},
        "relu_sgd": {**_NETWORK, "particles": 100, "batch_size": 64, "step": 0.5, "iterations": 10_000,
                     "snapshots": 80},
    },
    "paper": {
        "deconvolution": {"spikes": 5, "cutoff": 12, "lam": 0.2, "noise": 0.0, "particles": 50,
                          "iterations": 20_000, "snapshots": 150},
        "relu_gd": {**_NETWORK, "particles": 10, "train_size": 2000, "iterations": 20_000, "snapshots": 150},
        "relu_sgd": {**_NETWORK, "particles": 100, "batch_size": 64, "step": 0.5, "iterations": 50_000,
                     "snapshots": 150},
    },
}

RUNS = ("deconvolution", "relu_gd", "relu_sgd")
_UNIT_COLUMNS = ("w", "b", "a")


# -- computation ----------------------------------------------------------------------------

def _metrics(run: str, values: dict) -> pd.DataFrame:
    return pd.DataFrame({"run": run, "metric": list(values), "value": [float(v) for v in values.values()]})


def _history(res) -> pd.DataFrame:
    return pd.DataFrame({"iteration": np.asarray(res.history_iterations, dtype=int),
                         "objective": np.asarray(res.history, dtype=float)})


def run_deconvolution(out_dir: pathlib.Path, p: dict, seed: int) -> pd.DataFrame:
    """Forward–backward on a random 1-D spike signal; writes its tables, returns metrics."""
    import measureflow as mf
    from measureflow.deconvolution import blasso, extract_spikes, recovery_errors

    signal = mf.data.SpikeSignal(spikes=p["spikes"], dim=1, cutoff=p["cutoff"], noise=p["noise"], seed=seed)
    problem = blasso(signal, p["lam"])
    mu0 = mf.init.admissible(problem.feature, p["particles"], key=seed)
    res = mf.solve(problem, mu0, "fb", iterations=p["iterations"], snapshots=p["snapshots"])
    write_table(out_dir, "deconvolution_paths", paths_table(res.trajectory_iterations, res.trajectory, ("r", "t")))
    write_table(out_dir, "deconvolution_history", _history(res))
    write_table(out_dir, "deconvolution_truth", {"t": np.asarray(signal.positions)[:, 0],
                                                 "a": np.asarray(signal.amplitudes)})
    X = np.asarray(signal.X)[:, 0]
    write_table(out_dir, "deconvolution_signal", {"x": X, "y": np.asarray(signal.y), "clean": np.asarray(signal.clean),
                                                  "fit": np.asarray(problem.predict(res.particles))})
    # spikes are merged within a tenth of the kernel's resolution (1/f_c)
    est = extract_spikes(res.particles, radius=0.1 / p["cutoff"], feature=problem.feature)
    write_table(out_dir, "deconvolution_recovered", {"t": est.positions[:, 0], "a": est.amplitudes,
                                                     "count": est.counts})
    err = recovery_errors(est, signal.positions, signal.amplitudes)
    gap = mf.certificates.duality_gap(problem, res.particles)
    opt = mf.deconvolution.deconvolve(problem).gap  # the certified F* the flow is compared with
    return _metrics("deconvolution", {
        "certified_optimum": opt.objective, "certified_optimum_gap": opt.gap,
        "excess_over_optimum": res.objective - opt.dual,
        "particles": p["particles"], "iterations": p["iterations"], "step": res.step, "lam": p["lam"],
        "initial_objective": res.history[0], "final_objective": res.objective, "duality_gap": gap.gap,
        "relative_gap": gap.relative, "sup_eta": gap.sup_eta, "true_spikes": signal.spikes,
        "recovered_spikes": len(est), "missing": err.missing, "spurious": err.spurious,
        "position_error": err.position, "amplitude_error": err.amplitude})


def _check_planar(p: dict) -> None:
    if p["input_dim"] + int(p["bias"]) != 2:
        raise ValidationError(
            f"the network trajectories are drawn in the (w, b) plane: they need input_dim + bias = 2, got "
            f"input_dim={p['input_dim']}, bias={p['bias']}")


def _teacher(p: dict, seed: int):
    import measureflow as mf

    _check_planar(p)
    teacher = mf.data.TeacherStudent(p["input_dim"], p["teacher_units"], "relu", bias=p["bias"], seed=seed)
    return teacher, mf.features.ReLU(p["input_dim"], bias=p["bias"])


def _unit_table(units: np.ndarray, p: dict) -> pd.DataFrame:
    """Network units (k, p) as columns w, b, a (w1, w2, a without a bias)."""
    return pd.DataFrame(dict(zip(_columns(p), np.asarray(units, dtype=float).T)))


def _columns(p: dict) -> tuple[str, ...]:
    return _UNIT_COLUMNS if p["bias"] else ("w1", "w2", "a")


ALIGN_DEGREES = 10.0


def aligned_fraction(units: np.ndarray, teacher: np.ndarray, degrees: float = ALIGN_DEGREES) -> float:
    """The share of the student's scale Σ_i |a_i|·|(w_i, b_i)| carried by units within
    ``degrees`` of the ray of a teacher unit whose output weight has the same sign; units
    (m, 3) and teacher (k, 3) as (w, b, a). For a 2-homogeneous unit, |a|·|(w, b)| is the
    size of its contribution and (w, b)/|(w, b)| its direction."""
    def directions(P):
        n = np.linalg.norm(P[:, :2], axis=1)
        return P[:, :2] / np.where(n > 0, n, 1.0)[:, None], n

    U, n = directions(np.asarray(units, dtype=float))
    T, _ = directions(np.asarray(teacher, dtype=float))
    scale = np.abs(units[:, 2]) * n
    same = np.sign(units[:, 2])[:, None] == np.sign(teacher[:, 2])[None, :]
    cos = np.where(same, U @ T.T, -1.0).max(axis=1)
    near = cos >= np.cos(np.radians(degrees))
    return float(scale[near].sum() / scale.sum()) if scale.sum() > 0 else float("nan")


def run_network(out_dir: pathlib.Path, run: str, p: dict, seed: int) -> pd.DataFrame:
    """GD on a training set (``relu_gd``) or SGD on the population loss (``relu_sgd``)."""
    import measureflow as mf

    teacher, feature = _teacher(p, seed)
    population = mf.Problem(feature, "square", None, teacher)
    mu0 = mf.init.admissible(feature, p["particles"], key=seed)
    if run == "relu_gd":
        problem = mf.Problem(feature, "square", None, teacher.training_set(p["train_size"], seed=seed))
        res = mf.solve(problem, mu0, "gd", iterations=p["iterations"], snapshots=p["snapshots"])
    else:
        problem = population
        res = mf.solve(problem, mu0, "sgd", step=p["step"], iterations=p["iterations"],
                       batch_size=p["batch_size"], key=seed, snapshots=p["snapshots"])
    cols = _columns(p)
    write_table(out_dir, f"{run}_paths", paths_table(res.trajectory_iterations, res.trajectory, cols))
    write_table(out_dir, f"{run}_history", _history(res))
    teacher_units = _unit_table(teacher.teacher, p).assign(mass=1.0 / p["teacher_units"])
    write_table(out_dir, f"{run}_teacher", teacher_units)
    values = {"particles": p["particles"], "iterations": p["iterations"], "step": res.step,
              "initial_objective": res.history[0], "final_objective": res.objective,
              "initial_population_risk": population.objective(mu0),
              "final_population_risk": population.objective(res.particles),
              "aligned_fraction": aligned_fraction(np.asarray(res.particles.positions), np.asarray(teacher.teacher))}
    if run == "relu_sgd":
        values["batch_size"] = p["batch_size"]
    return _metrics(run, values)


def run(out_dir: pathlib.Path, params: dict, seed: int, progress) -> None:
    """Compute the three trajectory runs and write their tables into ``out_dir``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = []
    for k, name in enumerate(RUNS):
        progress(f"{NAME}: {name}", k, len(RUNS))
        if name == "deconvolution":
            metrics.append(run_deconvolution(out_dir, params[name], seed))
        else:
            metrics.append(run_network(out_dir, name, params[name], seed))
    write_table(out_dir, "metrics", pd.concat(metrics, ignore_index=True))
    progress(f"{NAME}: done", len(RUNS), len(RUNS))


# -- figures from the tables ----------------------------------------------------------------

def _metric_lookup(out_dir) -> dict:
    df = read_table(out_dir, "metrics")
    return {(r, m): v for r, m, v in zip(df["run"], df["metric"], df["value"])}


def plot_deconvolution(out_dir: pathlib.Path) -> list[pathlib.Path]:
    from ..plotting.figures import history_axis, new_figure, save_figure
    from ..plotting.particle_paths import spike_paths

    paths = read_table(out_dir, "deconvolution_paths")
    truth = read_table(out_dir, "deconvolution_truth")
    sig = read_table(out_dir, "deconvolution_signal")
    rec = read_table(out_dir, "deconvolution_recovered")
    hist = read_table(out_dir, "deconvolution_history")
    _, S = paths_array(paths, ("r", "t"))
    fig, axes = new_figure(10, 7.5, nrows=2, ncols=2, gridspec_kw={"width_ratios": [3, 1.2]})
    ax = axes[0, 0]
    ax.plot(sig["x"], sig["y"], ".", color="0.5", ms=3, label="observation y")
    ax.plot(sig["x"], sig["fit"], color="k", lw=1, label="ψ * ν (final particles)")
    ax2 = ax.twinx()
    ax2.stem(truth["t"], truth["a"], linefmt="C2-", markerfmt="C2o", basefmt=" ", label="true spikes")
    if len(rec):
        ax2.stem(rec["t"], rec["a"], linefmt="C1--", markerfmt="C1x", basefmt=" ", label="recovered spikes")
    ax2.set_ylabel("spike amplitude")
    ax.set_ylabel("signal")
    ax.set_xlim(0, 1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_title("Observation and reconstruction")
    ax = axes[1, 0]
    spike_paths(ax, S[:, :, 1], S[:, :, 0], truth_t=truth["t"].to_numpy(), truth_a=truth["a"].to_numpy())
    ax.set_xlabel("position t")
    ax.set_ylabel("weight r")
    ax.set_title(f"Forward–backward paths of m = {S.shape[1]} particles")
    ax.legend(fontsize=7, loc="best")
    history_axis(axes[1, 1], hist["iteration"], hist["objective"], "objective F(μ)")
    axes[1, 1].set_title("Objective")
    axes[0, 1].axis("off")
    met = _metric_lookup(out_dir)
    axes[0, 1].text(0.0, 0.95, "\n".join([
        f"m = {int(met[('deconvolution', 'particles')])}, λ = {met[('deconvolution', 'lam')]:g}",
        f"iterations: {int(met[('deconvolution', 'iterations')])}",
        f"F(μ) = {met[('deconvolution', 'final_objective')]:.4g}",
        f"duality gap = {met[('deconvolution', 'duality_gap')]:.2e}",
        f"sup |η| = {met[('deconvolution', 'sup_eta')]:.4f}",
        f"spikes: {int(met[('deconvolution', 'recovered_spikes')])} recovered / "
        f"{int(met[('deconvolution', 'true_spikes')])} true",
        f"position error = {met[('deconvolution', 'position_error')]:.2e}",
    ]), va="top", fontsize=9, family="monospace", transform=axes[0, 1].transAxes)
    return save_figure(fig, out_dir, "deconvolution")


def plot_network(out_dir: pathlib.Path, run: str) -> list[pathlib.Path]:
    from ..plotting.figures import history_axis, new_figure, save_figure
    from ..plotting.particle_paths import planar_paths

    paths = read_table(out_dir, f"{run}_paths")
    teacher = read_table(out_dir, f"{run}_teacher")
    hist = read_table(out_dir, f"{run}_history")
    cols = tuple(c for c in paths.columns if c not in ("iteration", "particle"))
    _, S = paths_array(paths, cols)
    points = np.abs(S[:, :, 2:3]) * S[:, :, :2]
    T = teacher[list(cols)].to_numpy(dtype=float)
    m, m0 = S.shape[1], len(T)
    fig, axes = new_figure(10, 4.6, ncols=2, gridspec_kw={"width_ratios": [1.2, 1]})
    planar_paths(axes[0], points, np.sign(S[-1, :, 2]), teacher=np.abs(T[:, 2:3]) * T[:, :2],
                 teacher_signs=np.sign(T[:, 2]), teacher_scale=m / m0)
    what = "GD on a training set" if run == "relu_gd" else "SGD on the population loss"
    axes[0].set_title(f"ReLU, {what}: paths of |a|·({cols[0]}, {cols[1]}), m = {m}", fontsize=10)
    axes[0].set_xlabel(f"|a|·{cols[0]}")
    axes[0].set_ylabel(f"|a|·{cols[1]}")
    axes[0].legend(fontsize=7, loc="best")
    label = "training risk" if run == "relu_gd" else "population risk (exact)"
    history_axis(axes[1], hist["iteration"], hist["objective"], label)
    axes[1].set_title("Objective")
    return save_figure(fig, out_dir, run)


def plot(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Redraw the three trajectory figures from the tables in ``out_dir``."""
    out_dir = pathlib.Path(out_dir)
    return plot_deconvolution(out_dir) + plot_network(out_dir, "relu_gd") + plot_network(out_dir, "relu_sgd")


# -- animations from the tables --------------------------------------------------------------

#: The GIFs :func:`animate` writes, one per trajectory figure, and the tables each reads.
ANIMATIONS = {"deconvolution": ("deconvolution_paths", "deconvolution_truth"),
              "relu_gd": ("relu_gd_paths", "relu_gd_teacher"),
              "relu_sgd": ("relu_sgd_paths", "relu_sgd_teacher")}


def has_tables(out_dir) -> bool:
    """Whether ``out_dir`` holds every table :func:`animate` reads."""
    out_dir = pathlib.Path(out_dir)
    return all((out_dir / f"{t}.csv").is_file() for tables in ANIMATIONS.values() for t in tables)


def animate(out_dir: pathlib.Path, *, fps: int | None = None, frames: int | None = None,
            seconds: float | None = None) -> list[pathlib.Path]:
    """Write ``<run>.gif`` for each trajectory figure from the tables in ``out_dir`` alone:
    the spikes sliding with their weights (deconvolution) and the network units moving in
    the (w, b) plane with the teacher marked (relu_gd, relu_sgd). ``fps`` (default 10) and
    the length (``frames`` or ``seconds``; default one frame per snapshot) as in
    :func:`measureflow.plotting.animation.frame_count`."""
    from ..plotting import animation

    out_dir = pathlib.Path(out_dir)
    fps = animation.FPS if fps is None else fps
    length = {"fps": fps, "frames": frames, "seconds": seconds}
    its, S = paths_array(read_table(out_dir, "deconvolution_paths"), ("r", "t"))
    animation.frame_count(len(its), **length)  # the options are checked before any drawing
    truth = read_table(out_dir, "deconvolution_truth")
    written = [animation.spike_animation(
        out_dir / "deconvolution.gif", its, S[:, :, 1], S[:, :, 0], truth_t=truth["t"].to_numpy(),
        truth_a=truth["a"].to_numpy(), title=f"Forward–backward: m = {S.shape[1]} spikes sliding on T¹",
        **length)]
    for run in ("relu_gd", "relu_sgd"):
        paths = read_table(out_dir, f"{run}_paths")
        teacher = read_table(out_dir, f"{run}_teacher")
        cols = tuple(c for c in paths.columns if c not in ("iteration", "particle"))
        its, S = paths_array(paths, cols)
        T = teacher[list(cols)].to_numpy(dtype=float)
        what = "GD on a training set" if run == "relu_gd" else "SGD, fresh samples"
        written.append(animation.planar_animation(
            out_dir / f"{run}.gif", its, np.abs(S[:, :, 2:3]) * S[:, :, :2], np.sign(S[:, :, 2]),
            teacher=np.abs(T[:, 2:3]) * T[:, :2], teacher_signs=np.sign(T[:, 2]), teacher_scale=S.shape[1] / len(T),
            title=f"ReLU, {what}: m = {S.shape[1]} units |a|·({cols[0]}, {cols[1]})",
            xlabel=f"|a|·{cols[0]}", ylabel=f"|a|·{cols[1]}", **length))
    return written


def summarize(out_dir: pathlib.Path) -> str:
    """One paragraph reading the trajectory figures, numbers from ``metrics.csv``."""
    met = _metric_lookup(pathlib.Path(out_dir))

    def g(run, key):
        return met[(run, key)]

    d = "deconvolution"
    text = (
        f"Forward–backward moves m = {int(g(d, 'particles'))} spikes from zero weight on a uniform grid onto the "
        f"{int(g(d, 'true_spikes'))} true spikes: after {int(g(d, 'iterations'))} iterations the objective fell from "
        f"{g(d, 'initial_objective'):.4g} to {g(d, 'final_objective'):.4g}, the duality gap certifies "
        f"F(μ) − F* ≤ {g(d, 'duality_gap'):.2e} (sup|η| = {g(d, 'sup_eta'):.4f}), and merging the particles gives "
        f"{int(g(d, 'recovered_spikes'))} spikes ({int(g(d, 'missing'))} missing, {int(g(d, 'spurious'))} spurious, "
        f"largest position error {g(d, 'position_error'):.2e}, amplitude error {g(d, 'amplitude_error'):.3g}, "
        f"which includes the shrinkage by λ). ")
    for run, what in (("relu_gd", "GD with m = {m} units on the training set"),
                      ("relu_sgd", "SGD with m = {m} units and fresh samples")):
        ratio = g(run, "final_population_risk") / g(run, "initial_population_risk")
        text += (
            f"{what.format(m=int(g(run, 'particles')))} takes the "
            f"{'training' if run == 'relu_gd' else 'population'} risk from {g(run, 'initial_objective'):.3g} to "
            f"{g(run, 'final_objective'):.3g} in {int(g(run, 'iterations'))} iterations (exact population risk "
            f"{g(run, 'initial_population_risk'):.3g} → {g(run, 'final_population_risk'):.3g}, a factor "
            f"{ratio:.1e}); {g(run, 'aligned_fraction'):.0%} of the student's scale Σ|a|·|(w, b)| sits within "
            f"{ALIGN_DEGREES:g}° of the ray of a teacher unit of the same sign. ")
    return text.strip()
