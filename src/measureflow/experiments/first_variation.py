"""First variation at initialization: level lines of F'(μ0)(θ) on 2-D slices of Θ.

F'(μ0)(θ) = E[∂₁ℓ(f_μ0(x), y) φ(θ, x)] + V(θ) is the rate at which F changes when mass is
added at θ; the flow moves each particle down ∇_θ F'. Where F'(μ0) < 0 the measure can
still decrease F, and global convergence needs μ0 to reach every such region: the panels
draw the support of the admissible μ0 on each slice.

- ``relu`` (fully 2-homogeneous, θ = (w, b, a)): the plane through 0 spanned by the
  output-weight axis e_a and the direction u* = (cos α*, sin α*, 0) of (w, b) along which
  |F'(μ0)| is largest on the unit sphere (so the plane holds the minimizer of F' over the
  sphere). F'(θ) = |θ|² F'(θ/|θ|): its sign depends on the direction only, and supp μ0 (the
  unit sphere) meets the plane in the unit circle, which runs through every direction.
- ``spikes`` (partially 1-homogeneous, θ = (r, t) ∈ R × T): the whole of Θ; supp μ0 is
  the line r = 0 (particles on a uniform grid), F' = r·c(t) + λ|r| is negative only where
  |c(t)| > λ, and most negative next to the true spikes.

Tables: ``panels.csv`` (panel, title, axis labels, homogeneity, support kind, λ),
``grid.csv`` (panel, x, y, value), ``support.csv`` (panel, x, y, value,
normal_derivative: the derivative of the smooth part of F' across the support, i.e. the
initial speed of the particles off it), ``marks.csv`` (panel, x, y, kind, sign).
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from .params import parse
from .tables import read_table, write_table

NAME = "first_variation"
ORDER = 30  # place in the report (experiments.registry)
TITLE = "First variation at initialization"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReluPanel(_Strict):
    """The ReLU panel: a teacher of ``teacher_units`` units (d = 1 with a bias), a training
    set, μ0 of ``particles`` units, a ``grid`` × ``grid`` slice of half-width ``extent``."""

    teacher_units: PositiveInt
    train_size: PositiveInt
    particles: PositiveInt
    grid: int = Field(ge=3)
    extent: PositiveFloat


class SpikesPanel(_Strict):
    """The spikes panel: BLASSO with weight ``lam`` on a signal of ``spikes`` spikes, μ0 of
    ``particles`` spikes at r = 0, the (t, r) plane on a ``grid`` × ``grid`` grid."""

    spikes: PositiveInt
    cutoff: PositiveInt
    lam: float = Field(ge=0)
    particles: PositiveInt
    grid: int = Field(ge=3)
    r_extent: PositiveFloat


class Params(_Strict):
    """One preset entry of the first-variation experiment: one set of parameters per panel."""

    relu: ReluPanel
    spikes: SpikesPanel


PRESETS = {
    "test": {
        "relu": {"teacher_units": 3, "train_size": 200, "particles": 200, "grid": 41, "extent": 1.6},
        "spikes": {"spikes": 2, "cutoff": 6, "lam": 4.0, "particles": 12, "grid": 61, "r_extent": 1.0},
    },
    "quick": {
        "relu": {"teacher_units": 3, "train_size": 1000, "particles": 1000, "grid": 121, "extent": 1.6},
        "spikes": {"spikes": 4, "cutoff": 10, "lam": 4.0, "particles": 32, "grid": 201, "r_extent": 1.0},
    },
    "paper": {
        "relu": {"teacher_units": 3, "train_size": 4000, "particles": 4000, "grid": 301, "extent": 1.6},
        "spikes": {"spikes": 5, "cutoff": 12, "lam": 4.0, "particles": 50, "grid": 401, "r_extent": 1.0},
    },
}

PANELS = ("relu", "spikes")
_SUPPORT_POINTS = 361


# -- computation ----------------------------------------------------------------------------

_CHUNK = 4096  # thetas per compiled evaluation: every slice reuses one compilation


def _fv(problem, mu0, T):
    return problem.first_variation(mu0, T)


def _fv_normal(problem, mu0, T, N):
    return jnp.sum(problem.first_variation_grad(mu0, T, smooth_only=True) * N, axis=1)


def _chunked(fn, arrays: list[np.ndarray]) -> np.ndarray:
    k = len(arrays[0])
    size = -(-k // _CHUNK) * _CHUNK
    padded = [np.concatenate([a, np.repeat(a[:1], size - k, axis=0)]) for a in arrays]
    return np.concatenate([np.asarray(fn(*(a[i:i + _CHUNK] for a in padded)))
                           for i in range(0, size, _CHUNK)])[:k]


def _evaluate(problem, mu0, thetas: np.ndarray, normals: np.ndarray | None = None):
    """F'(μ0) at thetas (k, p) and, if ``normals`` (k, p) is given, the derivative of its
    smooth part (without V) along them."""
    import jax

    fv = jax.jit(_fv)
    values = _chunked(lambda T: fv(problem, mu0, T), [thetas])
    if normals is None:
        return values
    fvn = jax.jit(_fv_normal)
    return values, _chunked(lambda T, N: fvn(problem, mu0, T, N), [thetas, normals])


def _grid_table(panel: str, xs: np.ndarray, ys: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    X, Y = np.meshgrid(xs, ys)  # rows: y, columns: x
    return pd.DataFrame({"panel": panel, "x": X.ravel(), "y": Y.ravel(), "value": values.ravel()})


def _support_table(panel, x, y, values, normal) -> pd.DataFrame:
    return pd.DataFrame({"panel": panel, "x": x, "y": y, "value": values, "normal_derivative": normal})


def _network_problem(activation: str, p: dict, seed: int, **teacher_options):
    import measureflow as mf

    teacher = mf.data.TeacherStudent(1, p["teacher_units"], activation, bias=True, seed=seed, **teacher_options)
    feature = teacher.teacher_feature
    return mf.Problem(feature, "square", None, teacher.training_set(p["train_size"], seed=seed)), teacher


def relu_panel(p: dict, seed: int):
    """The ReLU plane through 0 spanned by u* = (cos α*, sin α*, 0) and e_a, with the great
    circle where it meets supp μ0 (the unit sphere)."""
    import measureflow as mf

    problem, _ = _network_problem("relu", p, seed)
    mu0 = mf.init.admissible(problem.feature, p["particles"], key=seed)
    # u*: the (w, b) direction where |F'| on the unit sphere is largest (at a = ±1/√2); the
    # plane then holds the minimizer of F' over the sphere
    alphas = np.linspace(-np.pi, np.pi, 720, endpoint=False)
    probe = np.stack([np.cos(alphas), np.sin(alphas), np.ones_like(alphas)], axis=1) / np.sqrt(2)
    alpha = float(alphas[np.argmax(np.abs(_evaluate(problem, mu0, probe)))])
    u = np.array([np.cos(alpha), np.sin(alpha), 0.0])
    e_a = np.array([0.0, 0.0, 1.0])
    g = np.linspace(-p["extent"], p["extent"], p["grid"])
    S, A = np.meshgrid(g, g)
    thetas = S.ravel()[:, None] * u + A.ravel()[:, None] * e_a
    grid = _grid_table("relu", g, g, _evaluate(problem, mu0, thetas).reshape(S.shape))
    phi = np.linspace(0, 2 * np.pi, _SUPPORT_POINTS)
    cs, ca = np.cos(phi), np.sin(phi)
    on_circle = cs[:, None] * u + ca[:, None] * e_a  # unit vectors: also the sphere's outward normals
    values, normal = _evaluate(problem, mu0, on_circle, on_circle)
    support = _support_table("relu", cs, ca, values, normal)
    best = int(np.argmin(values))
    marks = pd.DataFrame({"panel": "relu", "x": [cs[best]], "y": [ca[best]], "kind": ["min of F' on supp μ0"],
                          "sign": [0.0]})
    info = {"panel": "relu", "title": "ReLU (2-homogeneous), plane through 0",
            "xlabel": f"s, with (w, b) = s·(cos α*, sin α*), α* = {np.degrees(alpha):.1f}°",
            "ylabel": "output weight a", "homogeneity": "full", "support": "circle", "lam": 0.0}
    return info, grid, support, marks


def spikes_panel(p: dict, seed: int):
    """The whole (t, r) space of spikes, with the line r = 0 and the grid of μ0."""
    import measureflow as mf
    from measureflow.deconvolution import blasso

    signal = mf.data.SpikeSignal(spikes=p["spikes"], dim=1, cutoff=p["cutoff"], seed=seed)
    problem = blasso(signal, p["lam"])
    mu0 = mf.init.admissible(problem.feature, p["particles"], key=seed)
    t = np.linspace(0.0, 1.0, p["grid"])
    r = np.linspace(-p["r_extent"], p["r_extent"], p["grid"])
    Tg, R = np.meshgrid(t, r)
    thetas = np.stack([R.ravel(), Tg.ravel()], axis=1)
    grid = _grid_table("spikes", t, r, _evaluate(problem, mu0, thetas).reshape(Tg.shape))
    ts = np.linspace(0.0, 1.0, _SUPPORT_POINTS)
    line = np.stack([np.zeros_like(ts), ts], axis=1)
    normals = np.tile([1.0, 0.0], (len(ts), 1))
    values, normal = _evaluate(problem, mu0, line, normals)
    support = _support_table("spikes", ts, np.zeros_like(ts), values, normal)
    P0 = np.asarray(mu0.positions)
    marks = pd.concat([
        pd.DataFrame({"panel": "spikes", "x": np.asarray(signal.positions)[:, 0], "y": 0.0,
                      "kind": "true spike", "sign": np.sign(np.asarray(signal.amplitudes))}),
        pd.DataFrame({"panel": "spikes", "x": P0[:, 1], "y": P0[:, 0], "kind": "particle of μ0", "sign": 0.0}),
    ], ignore_index=True)
    info = {"panel": "spikes", "title": f"Spikes (partially 1-homogeneous), λ = {p['lam']:g}",
            "xlabel": "position t", "ylabel": "weight r", "homogeneity": "partial", "support": "line",
            "lam": float(p["lam"])}
    return info, grid, support, marks


_BUILDERS = {"relu": relu_panel, "spikes": spikes_panel}


def run(out_dir: pathlib.Path, params: dict, seed: int, progress) -> None:
    """Evaluate F'(μ0) on the slices of the two panels and write the tables."""
    checked = parse(Params, params, NAME)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    infos, grids, supports, marks = [], [], [], []
    for k, panel in enumerate(PANELS):
        progress(f"{NAME}: {panel}", k, len(PANELS))
        info, grid, support, mark = _BUILDERS[panel](getattr(checked, panel).model_dump(), seed)
        infos.append(info)
        grids.append(grid)
        supports.append(support)
        marks.append(mark)
    write_table(out_dir, "panels", pd.DataFrame(infos))
    write_table(out_dir, "grid", pd.concat(grids, ignore_index=True))
    write_table(out_dir, "support", pd.concat(supports, ignore_index=True))
    write_table(out_dir, "marks", pd.concat(marks, ignore_index=True))
    progress(f"{NAME}: done", len(PANELS), len(PANELS))


# -- figure from the tables -----------------------------------------------------------------

def _panel_grid(grid: pd.DataFrame, panel: str):
    g = grid[grid["panel"] == panel]
    xs, ys = np.unique(g["x"].to_numpy()), np.unique(g["y"].to_numpy())
    Z = g.sort_values(["y", "x"], kind="stable")["value"].to_numpy().reshape(len(ys), len(xs))
    return xs, ys, Z


def plot(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Redraw the level-line figure from the tables in ``out_dir``."""
    from ..plotting.figures import new_figure, save_figure
    from ..plotting.level_lines import level_lines

    out_dir = pathlib.Path(out_dir)
    panels = read_table(out_dir, "panels")
    grid, support, marks = (read_table(out_dir, n) for n in ("grid", "support", "marks"))
    fig, axes = new_figure(5.0 * len(panels), 4.6, ncols=len(panels), squeeze=False)
    for ax, info in zip(axes[0], panels.to_dict("records")):
        name = info["panel"]
        xs, ys, Z = _panel_grid(grid, name)
        filled = level_lines(ax, xs, ys, Z)
        fig.colorbar(filled, ax=ax, shrink=0.85, label="F'(μ0)(θ)")
        sup = support[support["panel"] == name]
        ax.plot(sup["x"], sup["y"], color="gold", lw=2.5, label="supp μ0 ∩ slice")
        for kind, group in marks[marks["panel"] == name].groupby("kind", sort=True):
            if kind == "particle of μ0":
                ax.plot(group["x"], group["y"], "o", color="k", ms=3, label=kind, zorder=6)
            elif kind == "true spike":
                for x, s in zip(group["x"], group["sign"]):
                    ax.axvline(x, color="tab:red" if s > 0 else "tab:blue", ls="--", lw=1)
                ax.plot([], [], "--", color="0.3", label="true spike (colour: sign)")
            else:
                colors = ["tab:red" if s > 0 else "tab:blue" if s < 0 else "k" for s in group["sign"]]
                ax.scatter(group["x"], group["y"], marker="*", s=120, c=colors, edgecolors="w", zorder=5, label=kind)
        ax.set_title(info["title"], fontsize=10)
        ax.set_xlabel(info["xlabel"])
        ax.set_ylabel(info["ylabel"])
        ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
        if info["support"] == "circle":
            ax.set_aspect("equal")
    return save_figure(fig, out_dir, "first_variation")


def summarize(out_dir: pathlib.Path) -> str:
    """One paragraph reading the level-line figure, numbers from the tables."""
    out_dir = pathlib.Path(out_dir)
    panels = read_table(out_dir, "panels").set_index("panel")
    grid, support, marks = (read_table(out_dir, n) for n in ("grid", "support", "marks"))
    parts = []
    for name, info in panels.iterrows():
        g = grid[grid["panel"] == name]["value"].to_numpy()
        s = support[support["panel"] == name]
        if info["support"] == "circle":
            v = s["value"].to_numpy()
            i = int(np.argmin(v))
            parts.append(
                f"{info['title']}: F'(μ0) ranges over [{g.min():.3g}, {g.max():.3g}] on the slice and over "
                f"[{v.min():.3g}, {v.max():.3g}] on the unit circle where supp μ0 meets it, with its minimum at "
                f"(s, a) = ({s['x'].iloc[i]:.2f}, {s['y'].iloc[i]:.2f}); the level lines are those of a 2-homogeneous "
                f"function (F' = |θ|² F'(θ/|θ|)), so the sign of F' depends on the direction only; the unit sphere that "
                f"carries μ0 (drawn: its great circle in this plane) meets every direction, so μ0 has mass in every "
                f"cone where adding mass lowers F.")
        else:
            d = s["normal_derivative"].to_numpy()
            lam = float(info["lam"])
            x = s["x"].to_numpy()
            best = x[np.argmax(np.abs(d))]
            text = (f"{info['title']}: F'(μ0) ranges over [{g.min():.3g}, {g.max():.3g}]; it vanishes on the line "
                    f"r = 0 that carries μ0 and is linear in r on each side, with smooth slope |∂_r R'| up to "
                    f"{np.abs(d).max():.3g} at t = {best:.3f}")
            truth = marks[(marks["panel"] == name) & (marks["kind"] == "true spike")]["x"].to_numpy()
            if len(truth):
                gap = np.abs(truth - best) % 1.0
                text += f" ({np.min(np.minimum(gap, 1 - gap)):.3f} from the nearest true spike)"
            if lam > 0:
                text += (f"; F' < 0 is reachable from r = 0 only where that slope exceeds λ = {lam:g}, on "
                         f"{np.mean(np.abs(d) > lam):.0%} of the positions: the particles there leave r = 0 first.")
            else:
                text += "."
            parts.append(text)
    return " ".join(parts)
