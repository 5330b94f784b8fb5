"""Trajectory figures: particles travelling from μ0 to the global minimizer.

- ``deconvolution``: forward–backward on 1-D sparse spike deconvolution (BLASSO), m = 10
  spikes θ = (r, t) for 5 true spikes, from r = 0 on a uniformly shifted grid; paths in the
  (position t, amplitude r/m) plane, with the true spikes (t_k, a_k) as marks.
- ``relu_gd``: GD on the exact population loss of a ReLU teacher–student problem without
  bias, x ~ N(0, I_2), m = 10 units θ = (w, a) ∈ R² × R.
- ``relu_sgd``: the same teacher, m = 100, SGD with fresh samples (the population loss).

**Where the minimizer is and why it is unique.** A unit contributes a·relu(w·x) =
a|w|·relu(u·x), u = w/|w|, so a student is the signed measure ν = Σ_i (1/m) a_i|w_i| δ_{u_i}
on the circle of directions and the teacher is Σ_k (1/m0) a*_k|w*_k| δ_{u*_k}. Since
relu(z) = (z + |z|)/2 and |cos| has no odd Fourier modes but all even ones, f_ν = f* exactly
when ν has the teacher's even part and first moment: the population loss (exact, the
arc-cosine kernel) does not pin ν down by itself. Among those ν the teacher is the unique
one of least total mass |ν| = Σ_i |a_i||w_i|/m when the signed directions s_k u*_k
(s_k = sign a*_k) lie in an open half-plane: then η(u) = e(u) + v·u, e even, s_k v·u*_k ∈
(0, 1), is a dual certificate with |η| < 1 off the teacher's directions. The default teacher
(m0 = 3, units at 0°, 120° (a* = +1) and 250° (a* = −1), |w*| = 1: at least 110° apart, and
s_k u*_k at 0°, 70°, 120°) satisfies it; the flow from a small μ0 (radius 0.3, uniform on the
sphere: the admissible law) is drawn to it, and the share of the student's mass within 5° of
a teacher direction of the same sign (``aligned_fraction``) measures how far it got.

**Coordinates.** Each unit is drawn at |a_i|·w_i = |a_i||w_i|·u_i, coloured by sign(a_i):
its direction and its size; the teacher's rays are dashed, its stars sit at (m/m0)·|a*_k|w*_k
(what the student's units on that ray must carry together). At the end the student's mass
on each teacher ray, Σ_{i within 5°, same sign} |a_i||w_i|/m, is drawn at that mass along
the ray next to the teacher's mass |a*_k||w*_k|/m0: at the optimum the two coincide.

For deconvolution the measure is ν = Σ_i (r_i/m) δ_{t_i}; the share of Σ_i|r_i| held by
particles within ``0.1/f_c`` (a tenth of the kernel's resolution, the radius within which
:func:`~measureflow.deconvolution.extract_spikes` merges particles) of a true spike of the
same sign is its ``aligned_fraction``. The cutoff is f_c = 8, so that on the uniform
grid of m = 10 every spike is within 0.05 of a particle, inside the main lobe of the
Dirichlet kernel (its first zero is at 1/(2f_c + 1) ≈ 0.059; at f_c = 12 a particle 0.05 away
sits on a negative side lobe and grows with the wrong sign); five spikes then fit only with a
separation below the default 2/f_c: they are 0.16 = 1.28/f_c apart. The duality gap
certifies the final objective.

Tables (``out_dir``): ``<run>_paths.csv`` (iteration, particle, coordinates),
``<run>_history.csv`` (iteration, objective), ``<run>_teacher.csv``,
``<run>_rays.csv`` (the student's mass per teacher ray at the end),
``deconvolution_truth.csv``, ``deconvolution_signal.csv``, ``deconvolution_recovered.csv``
and ``metrics.csv`` (run, metric, value). :func:`animate` draws ``<run>.gif`` (the particles
moving) from the paths and teacher/truth tables alone.
"""

from __future__ import annotations

import pathlib
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from ..errors import ValidationError
from .params import parse
from .tables import paths_array, paths_table, read_table, write_table

NAME = "trajectories"
ORDER = 20  # place in the report (experiments.registry)
TITLE = "Particle trajectories"

RUNS = ("deconvolution", "relu_gd", "relu_sgd")

#: Degrees within which a unit counts as on a teacher unit's ray (``aligned_fraction``).
ALIGN_DEGREES = 5.0
#: Tolerance for spikes, in units of the kernel's resolution 1/f_c.
SPIKE_TOLERANCE = 0.1


# -- parameters -----------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeconvolutionRun(_Strict):
    """Forward–backward on a random 1-D spike signal (BLASSO with weight λ)."""

    spikes: PositiveInt
    cutoff: PositiveInt
    min_separation: PositiveFloat | None = None  # None: the signal's default 2/f_c
    lam: PositiveFloat
    noise: float = Field(0.0, ge=0)
    particles: PositiveInt
    iterations: PositiveInt
    snapshots: int = Field(ge=2)
    certify: bool = False  # also solve to a certified optimum (``deconvolve``) and report F(μ) − F*


class NetworkRun(_Strict):
    """A ReLU teacher–student run without bias in the plane (input_dim = 2): teacher units
    at ``teacher_angles`` (degrees) with output weights ``teacher_signs``, |w*| = 1; the
    student from the admissible μ0 of radius ``init_radius``; GD on the exact population
    loss (``batch_size`` None) or SGD on fresh batches (``batch_size`` and ``step``)."""

    teacher_angles: list[float] = Field(min_length=1)
    teacher_signs: list[Literal[-1, 1]] = Field(min_length=1)
    particles: PositiveInt
    init_radius: PositiveFloat
    iterations: PositiveInt
    snapshots: int = Field(ge=2)
    batch_size: PositiveInt | None = None
    step: PositiveFloat | None = None

    @model_validator(mode="after")
    def _teacher_is_identifiable(self):
        if len(self.teacher_angles) != len(self.teacher_signs):
            raise ValueError(f"teacher_angles has {len(self.teacher_angles)} entries but teacher_signs has "
                             f"{len(self.teacher_signs)}")
        # the teacher is the unique least-mass representation of f* when the signed directions
        # s_k u_k lie in an open half-plane: every gap between them on the circle is < 180° but one
        signed = np.sort(np.mod(np.asarray(self.teacher_angles) + 90.0 * (1 - np.asarray(self.teacher_signs)), 360.0))
        gaps = np.diff(np.concatenate([signed, signed[:1] + 360.0]))
        if gaps.max() <= 180.0:
            raise ValueError("the signed teacher directions sign(a*_k)·u_k must lie in an open half-plane "
                             f"(largest gap between them {gaps.max():.1f}° must exceed 180°)")
        return self


class Params(_Strict):
    """One preset entry of the trajectory experiment: one set of parameters per run."""

    deconvolution: DeconvolutionRun
    relu_gd: NetworkRun
    relu_sgd: NetworkRun


_TEACHER = {"teacher_angles": [0.0, 120.0, 250.0], "teacher_signs": [1, 1, -1], "init_radius": 0.3}
_SPIKES = {"spikes": 5, "cutoff": 8, "min_separation": 0.16, "lam": 0.2, "noise": 0.0, "particles": 10}
PRESETS = {
    "test": {
        "deconvolution": {**_SPIKES, "spikes": 2, "cutoff": 6, "min_separation": None, "particles": 6,
                          "iterations": 300, "snapshots": 12},
        "relu_gd": {**_TEACHER, "particles": 10, "iterations": 300, "snapshots": 12},
        "relu_sgd": {**_TEACHER, "particles": 20, "batch_size": 16, "step": 2.0, "iterations": 300,
                     "snapshots": 12},
    },
    "quick": {
        "deconvolution": {**_SPIKES, "iterations": 5000, "snapshots": 80},
        "relu_gd": {**_TEACHER, "particles": 10, "iterations": 3000, "snapshots": 80},
        "relu_sgd": {**_TEACHER, "particles": 100, "batch_size": 64, "step": 2.0, "iterations": 10_000,
                     "snapshots": 80},
    },
    "paper": {
        "deconvolution": {**_SPIKES, "iterations": 20_000, "snapshots": 150, "certify": True},
        "relu_gd": {**_TEACHER, "particles": 10, "iterations": 10_000, "snapshots": 150},
        "relu_sgd": {**_TEACHER, "particles": 100, "batch_size": 64, "step": 2.0, "iterations": 40_000,
                     "snapshots": 150},
    },
}


# -- the mass-within-5° measure -----------------------------------------------------------

def unit_masses(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions u_i = w_i/|w_i| (m, 2) and signed masses a_i|w_i| (m,) of units (m, 3)
    θ_i = (w_i, a_i): the unit's function is a_i|w_i|·relu(u_i·x). A unit with w_i = 0 has
    mass 0 (its direction is set to (1, 0))."""
    P = np.asarray(units, dtype=float)
    n = np.linalg.norm(P[:, :2], axis=1)
    return P[:, :2] / np.where(n > 0, n, 1.0)[:, None] + (n == 0)[:, None] * np.array([1.0, 0.0]), P[:, 2] * n


def nearest_teacher(units: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For units (m, 3) and teacher units (k, 3): the index of the nearest teacher
    direction with an output weight of the same sign (m,) and the angle to it in degrees
    (180 where no teacher unit has that sign)."""
    U, c = unit_masses(units)
    T, s = unit_masses(teacher)
    same = np.sign(c)[:, None] == np.sign(s)[None, :]
    cos = np.where(same, np.clip(U @ T.T, -1.0, 1.0), -1.0)
    k = cos.argmax(axis=1)
    return k, np.degrees(np.arccos(cos[np.arange(len(k)), k]))


def aligned_fraction(units: np.ndarray, teacher: np.ndarray, degrees: float = ALIGN_DEGREES) -> float:
    """The share of the student's mass Σ_i |a_i||w_i| held by units whose direction w_i/|w_i|
    is within ``degrees`` of the direction of a teacher unit whose output weight has the same
    sign; units (m, 3) and teacher (k, 3) as (w₁, w₂, a), equal masses 1/m. NaN for a student
    of zero mass."""
    _, c = unit_masses(units)
    _, angle = nearest_teacher(units, teacher)
    total = np.abs(c).sum()
    return float(np.abs(c)[angle <= degrees].sum() / total) if total > 0 else float("nan")


def ray_masses(units: np.ndarray, teacher: np.ndarray, degrees: float = ALIGN_DEGREES) -> np.ndarray:
    """The student's signed mass on each teacher ray (k,): Σ_i a_i|w_i|/m over the units
    within ``degrees`` of teacher unit k with the same sign (a student equal to the teacher
    gives a*_k|w*_k|/m0)."""
    k, angle = nearest_teacher(units, teacher)
    _, c = unit_masses(units)
    near = angle <= degrees
    return np.bincount(k[near], weights=c[near], minlength=len(teacher)) / len(c)


def spike_fraction(positions: np.ndarray, amplitudes: np.ndarray, truth_t: np.ndarray, truth_a: np.ndarray,
                   tolerance: float) -> float:
    """The share of Σ_i |amplitude_i| held by spikes within ``tolerance`` (torus distance)
    of a true spike of the same sign; positions (m,), amplitudes (m,), truth (k,)."""
    positions, amplitudes, truth_t, truth_a = (np.asarray(v, dtype=float)
                                               for v in (positions, amplitudes, truth_t, truth_a))
    d = np.abs(positions[:, None] - truth_t[None, :]) % 1.0
    d = np.minimum(d, 1.0 - d)
    same = np.sign(amplitudes)[:, None] == np.sign(truth_a)[None, :]
    near = np.where(same, d, np.inf).min(axis=1) <= tolerance
    total = np.abs(amplitudes).sum()
    return float(np.abs(amplitudes)[near].sum() / total) if total > 0 else float("nan")


# -- computation ----------------------------------------------------------------------------

def _metrics(run: str, values: dict) -> pd.DataFrame:
    return pd.DataFrame({"run": run, "metric": list(values), "value": [float(v) for v in values.values()]})


def _history(res) -> pd.DataFrame:
    return pd.DataFrame({"iteration": np.asarray(res.history_iterations, dtype=int),
                         "objective": np.asarray(res.history, dtype=float)})


def run_deconvolution(out_dir: pathlib.Path, p: DeconvolutionRun, seed: int) -> pd.DataFrame:
    """Forward–backward on a random 1-D spike signal; writes its tables, returns metrics."""
    import measureflow as mf
    from measureflow.deconvolution import blasso, extract_spikes, recovery_errors

    signal = mf.data.SpikeSignal(spikes=p.spikes, dim=1, cutoff=p.cutoff, min_separation=p.min_separation,
                                 noise=p.noise, seed=seed)
    problem = blasso(signal, p.lam)
    mu0 = mf.init.admissible(problem.feature, p.particles, key=seed)
    res = mf.solve(problem, mu0, "fb", iterations=p.iterations, snapshots=p.snapshots)
    write_table(out_dir, "deconvolution_paths", paths_table(res.trajectory_iterations, res.trajectory, ("r", "t")))
    write_table(out_dir, "deconvolution_history", _history(res))
    truth_t, truth_a = np.asarray(signal.positions)[:, 0], np.asarray(signal.amplitudes)
    write_table(out_dir, "deconvolution_truth", {"t": truth_t, "a": truth_a})
    X = np.asarray(signal.X)[:, 0]
    write_table(out_dir, "deconvolution_signal", {"x": X, "y": np.asarray(signal.y), "clean": np.asarray(signal.clean),
                                                  "fit": np.asarray(problem.predict(res.particles))})
    radius = SPIKE_TOLERANCE / p.cutoff
    est = extract_spikes(res.particles, radius=radius, feature=problem.feature)
    write_table(out_dir, "deconvolution_recovered", {"t": est.positions[:, 0], "a": est.amplitudes,
                                                     "count": est.counts})
    err = recovery_errors(est, signal.positions, signal.amplitudes)
    gap = mf.certificates.duality_gap(problem, res.particles)  # F(μ) − F* ≤ gap: the flow certifies itself
    certified = {}
    if p.certify:  # the certified F* of the package's own solver, for comparison (slower)
        opt = mf.deconvolution.deconvolve(problem).gap
        certified = {"certified_optimum": opt.objective, "certified_optimum_gap": opt.gap,
                     "excess_over_optimum": res.objective - opt.dual}
    P = np.asarray(res.particles.positions)
    amplitudes = np.asarray(res.particles.weights) * P[:, 0]
    return _metrics("deconvolution", {
        **certified, "particles": p.particles, "iterations": p.iterations, "step": res.step, "lam": p.lam,
        "initial_objective": res.history[0], "final_objective": res.objective, "duality_gap": gap.gap,
        "relative_gap": gap.relative, "sup_eta": gap.sup_eta, "true_spikes": signal.spikes,
        "recovered_spikes": len(est), "missing": err.missing, "spurious": err.spurious,
        "position_error": err.position, "amplitude_error": err.amplitude,
        "aligned_fraction": spike_fraction(P[:, 1], amplitudes, truth_t, truth_a, radius),
        "aligned_tolerance": radius})


def teacher_units(p: NetworkRun) -> np.ndarray:
    """The teacher (m0, 3) as (w₁, w₂, a*) with w* = (cos α_k, sin α_k), a* = ±1."""
    alpha = np.radians(np.asarray(p.teacher_angles, dtype=float))
    return np.stack([np.cos(alpha), np.sin(alpha), np.asarray(p.teacher_signs, dtype=float)], axis=1)


def _teacher(p: NetworkRun):
    """The population of the chosen teacher: ``TeacherStudent`` draws its units at random,
    and they are its only pytree leaf, so the chosen units take their place."""
    import jax
    import jax.numpy as jnp

    import measureflow as mf

    T = teacher_units(p)
    drawn = mf.data.TeacherStudent(2, len(T), "relu", bias=False)
    leaves, treedef = jax.tree_util.tree_flatten(drawn)
    if len(leaves) != 1 or leaves[0].shape != T.shape:  # pragma: no cover - guards a change in TeacherStudent
        raise ValidationError("TeacherStudent's pytree no longer holds the teacher as its only leaf")
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(T, dtype=leaves[0].dtype)])


_COLUMNS = ("w1", "w2", "a")


def run_network(out_dir: pathlib.Path, run: str, p: NetworkRun, seed: int) -> pd.DataFrame:
    """GD on the exact population loss (``relu_gd``) or SGD on fresh samples (``relu_sgd``)."""
    import measureflow as mf

    teacher = _teacher(p)
    feature = mf.features.ReLU(2, bias=False)
    problem = mf.Problem(feature, "square", None, teacher)
    if not problem.has_exact_risk:  # pragma: no cover - the closed form is what makes F exact
        raise ValidationError("the ReLU teacher–student problem has no closed-form population risk")
    mu0 = mf.init.admissible(feature, p.particles, key=seed, radius=p.init_radius)
    if p.batch_size is None:
        res = mf.solve(problem, mu0, "gd", step=p.step, iterations=p.iterations, snapshots=p.snapshots)
    else:
        res = mf.solve(problem, mu0, "sgd", step=p.step, iterations=p.iterations, batch_size=p.batch_size,
                       key=seed, snapshots=p.snapshots)
    if int(res.state.diverged_at) >= 0:
        raise ValidationError(f"the {run} run diverged at iteration {int(res.state.diverged_at)}; lower its step")
    T = teacher_units(p)
    P = np.asarray(res.particles.positions)
    write_table(out_dir, f"{run}_paths", paths_table(res.trajectory_iterations, res.trajectory, _COLUMNS))
    write_table(out_dir, f"{run}_history", _history(res))
    write_table(out_dir, f"{run}_teacher", pd.DataFrame(dict(zip(_COLUMNS, T.T))).assign(mass=1.0 / len(T)))
    write_table(out_dir, f"{run}_rays", {"teacher": np.arange(len(T)), "teacher_mass": T[:, 2] / len(T),
                                         "student_mass": ray_masses(P, T)})
    optimum = teacher.optimal_risk("square")
    final = float(problem.objective(res.particles))
    values = {"particles": p.particles, "iterations": p.iterations, "step": res.step,
              "init_radius": p.init_radius, "initial_population_risk": res.history[0],
              "final_population_risk": final, "final_excess": final - optimum,
              "aligned_fraction": aligned_fraction(P, T), "aligned_degrees": ALIGN_DEGREES,
              "aligned_fraction_10": aligned_fraction(P, T, 10.0)}
    if p.batch_size is not None:
        values["batch_size"] = p.batch_size
    return _metrics(run, values)


def run(out_dir: pathlib.Path, params: dict, seed: int, progress) -> None:
    """Compute the three trajectory runs and write their tables into ``out_dir``."""
    p = parse(Params, params, NAME)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = []
    for k, name in enumerate(RUNS):
        progress(f"{NAME}: {name}", k, len(RUNS))
        if name == "deconvolution":
            metrics.append(run_deconvolution(out_dir, p.deconvolution, seed))
        else:
            metrics.append(run_network(out_dir, name, getattr(p, name), seed))
    write_table(out_dir, "metrics", pd.concat(metrics, ignore_index=True))
    progress(f"{NAME}: done", len(RUNS), len(RUNS))


# -- figures from the tables ----------------------------------------------------------------

def _metric_lookup(out_dir) -> dict:
    df = read_table(out_dir, "metrics")
    return {(r, m): v for r, m, v in zip(df["run"], df["metric"], df["value"])}


def _share_text(fraction: float, where: str) -> str:
    return f"{fraction:.0%} of the mass within {where}"


def plot_deconvolution(out_dir: pathlib.Path) -> list[pathlib.Path]:
    from ..plotting.figures import history_axis, new_figure, save_figure
    from ..plotting.particle_paths import spike_paths

    paths = read_table(out_dir, "deconvolution_paths")
    truth = read_table(out_dir, "deconvolution_truth")
    sig = read_table(out_dir, "deconvolution_signal")
    rec = read_table(out_dir, "deconvolution_recovered")
    hist = read_table(out_dir, "deconvolution_history")
    met = _metric_lookup(out_dir)
    _, S = paths_array(paths, ("r", "t"))
    m = S.shape[1]
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
    tol = met[("deconvolution", "aligned_tolerance")]
    spike_paths(ax, S[:, :, 1], S[:, :, 0] / m, truth_t=truth["t"].to_numpy(), truth_a=truth["a"].to_numpy(),
                tolerance=tol)
    ax.set_xlabel("position t")
    ax.set_ylabel("amplitude r/m")
    share = _share_text(met[("deconvolution", "aligned_fraction")], f"{tol:.3g} of a true spike of its sign")
    ax.set_title(f"Forward–backward paths of m = {m} particles, {len(truth)} true spikes\n{share}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    history_axis(axes[1, 1], hist["iteration"], hist["objective"], "objective F(μ)")
    axes[1, 1].set_title("Objective")
    axes[0, 1].axis("off")
    axes[0, 1].text(0.0, 0.95, "\n".join([
        f"m = {int(met[('deconvolution', 'particles')])}, λ = {met[('deconvolution', 'lam')]:g}",
        f"iterations: {int(met[('deconvolution', 'iterations')])}",
        f"F(μ) = {met[('deconvolution', 'final_objective')]:.4g}",
        f"duality gap = {met[('deconvolution', 'duality_gap')]:.2e}",
        f"sup |η| = {met[('deconvolution', 'sup_eta')]:.4f}",
        f"spikes: {int(met[('deconvolution', 'recovered_spikes')])} recovered / "
        f"{int(met[('deconvolution', 'true_spikes')])} true",
        f"position error = {met[('deconvolution', 'position_error')]:.2e}",
        f"mass within {tol:.3g}: {met[('deconvolution', 'aligned_fraction')]:.1%}",
    ]), va="top", fontsize=9, family="monospace", transform=axes[0, 1].transAxes)
    return save_figure(fig, out_dir, "deconvolution")


_WHAT = {"relu_gd": "GD on the exact population loss", "relu_sgd": "SGD, fresh samples"}


def _network_tables(out_dir, run):
    paths = read_table(out_dir, f"{run}_paths")
    teacher = read_table(out_dir, f"{run}_teacher")
    its, S = paths_array(paths, _COLUMNS)
    return its, S, teacher[list(_COLUMNS)].to_numpy(dtype=float)


def plot_network(out_dir: pathlib.Path, run: str) -> list[pathlib.Path]:
    from ..plotting.figures import history_axis, new_figure, save_figure
    from ..plotting.particle_paths import planar_paths, ray_mass_panel

    _, S, T = _network_tables(out_dir, run)
    rays = read_table(out_dir, f"{run}_rays")
    hist = read_table(out_dir, f"{run}_history")
    met = _metric_lookup(out_dir)
    m, m0 = S.shape[1], len(T)
    fig, axes = new_figure(14, 4.8, ncols=3, gridspec_kw={"width_ratios": [1.15, 1.0, 0.9]})
    planar_paths(axes[0], np.abs(S[:, :, 2:3]) * S[:, :, :2], np.sign(S[-1, :, 2]),
                 teacher=np.abs(T[:, 2:3]) * T[:, :2], teacher_signs=np.sign(T[:, 2]), teacher_scale=m / m0)
    axes[0].set_title(f"ReLU, {_WHAT[run]}: units |a|·w, m = {m}", fontsize=10)
    axes[0].set_xlabel("|a|·w₁")
    axes[0].set_ylabel("|a|·w₂")
    axes[0].legend(fontsize=7, loc="best")
    degrees = met[(run, "aligned_degrees")]
    ray_mass_panel(axes[1], T, rays["teacher_mass"].to_numpy(), rays["student_mass"].to_numpy(), S[-1],
                   degrees=degrees)
    share = _share_text(met[(run, "aligned_fraction")], f"{degrees:g}° of a teacher unit of its sign")
    axes[1].set_title(f"Mass on each teacher ray at the end\n{share}", fontsize=10)
    history_axis(axes[2], hist["iteration"], hist["objective"], "population risk (exact)")
    axes[2].set_title(f"Objective (final excess {met[(run, 'final_excess')]:.1e})", fontsize=10)
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
    the spikes sliding with their amplitudes (deconvolution) and the network units moving
    in the plane with the teacher marked (relu_gd, relu_sgd). ``fps`` (default 10) and the
    length (``frames`` or ``seconds``; default one frame per snapshot) as in
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
        written.append(animation.planar_animation(
            out_dir / f"{run}.gif", its, np.abs(S[:, :, 2:3]) * S[:, :, :2], np.sign(S[:, :, 2]),
            teacher=np.abs(T[:, 2:3]) * T[:, :2], teacher_signs=np.sign(T[:, 2]), teacher_scale=S.shape[1] / len(T),
            title=f"ReLU, {_WHAT[run]}: m = {S.shape[1]} units |a|·w",
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
        f"F(μ) − F* ≤ {g(d, 'duality_gap'):.2e} (sup|η| = {g(d, 'sup_eta'):.4f}), "
        f"{g(d, 'aligned_fraction'):.0%} of the particles' total |amplitude| sits within "
        f"{g(d, 'aligned_tolerance'):.3g} of a true spike of the same sign, and merging the particles gives "
        f"{int(g(d, 'recovered_spikes'))} spikes ({int(g(d, 'missing'))} missing, {int(g(d, 'spurious'))} spurious, "
        f"largest position error {g(d, 'position_error'):.2e}, amplitude error {g(d, 'amplitude_error'):.3g}, "
        f"which includes the shrinkage by λ). ")
    for run, what in (("relu_gd", "GD on the exact population loss with m = {m} units"),
                      ("relu_sgd", "SGD with m = {m} units, {b} fresh samples per step,")):
        b = int(g(run, "batch_size")) if (run, "batch_size") in met else 0
        text += (
            f"{what.format(m=int(g(run, 'particles')), b=b)} takes the population risk (exact) from "
            f"{g(run, 'initial_population_risk'):.3g} to {g(run, 'final_population_risk'):.3g} in "
            f"{int(g(run, 'iterations'))} iterations (excess over the optimum {g(run, 'final_excess'):.1e}); "
            f"{g(run, 'aligned_fraction'):.0%} of the student's mass Σ|a|·|w| sits within "
            f"{g(run, 'aligned_degrees'):g}° of a teacher unit of the same sign "
            f"({g(run, 'aligned_fraction_10'):.0%} within 10°). ")
    return text.strip()
