"""The cells of the excess-loss experiment: problem construction and the sweep tasks.

A cell is (problem, m) with all its seeds (a seed draws the problem instance and μ0); its
particle flows run as one ``mf.solve_batch`` and stop by ``tol`` (each run on its own:
``Result.status`` ∈ converged / max_iterations / diverged); the convex baseline
(random features: μ0's positions frozen, weights optimized) is solved to optimality.

    deconvolution  1-D BLASSO F(ν) = ½‖ψ*ν − y‖² + λ|ν| of m0 spikes (``mf.data.SpikeSignal``:
                   random positions with a minimum separation, random signs, |a| ~ U[1, 2])
                   through a Dirichlet kernel of cut-off f_c; forward–backward from μ0 =
                   ``mf.init.admissible``: zero weights on a uniform grid of m positions
                   (equispaced, random offset). F* is certified separately, once per signal,
                   by ``mf.deconvolution.deconvolve`` (the task ``excess_loss.fstar``).
    relu, sigmoid  a teacher with m0 units (``mf.data.TeacherStudent``, Gaussian inputs,
                   noise-free: F* = 0), square loss, trained on the exact population loss
                   (``training="population"``; GD on its closed form where one exists —
                   ReLU without bias — else SGD on fresh samples, ``batch_size``) or on a
                   fixed training set of n samples (``training="dataset"``).

Excess loss E = F(μ) − F*: exact where F is (training set, closed-form population risk),
else the population excess ½E(f_μ − f*)² estimated on ``test_size`` fresh held-out samples,
with its standard error stored beside it.

Tasks: ``excess_loss.cell`` (one cell; config :class:`CellConfig`) and ``excess_loss.fstar``
(certified F* of a list of deconvolution seeds; config :class:`FstarConfig`).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Annotated, Literal, Union

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from pydantic import ConfigDict, Field, RootModel

from ...errors import ValidationError
from ..registry import describe_pydantic_error, register_task
from ..tasks import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, TaskConfig

TASK = "excess_loss.cell"
FSTAR_TASK = "excess_loss.fstar"
PROBLEMS = ("deconvolution", "relu", "sigmoid")
Seeds = Annotated[list[NonNegativeInt], Field(min_length=1)]


# -- configurations -------------------------------------------------------------------------

class _Cell(TaskConfig):
    """Keys shared by every cell: ``iterations`` the cap, ``tol`` the stop rule of
    ``mf.solve`` (relative stationarity; ``None``: run the cap), ``history_every`` (also
    how often ``tol`` is checked; default ``iterations // 200``), ``step`` (``None``: the
    default step), ``step_scale`` (a factor on the default step), ``batch_iterations``
    (the batch's own cap: the runs still going after it continue one by one, each from its
    state with ``mf.solve`` — bit for bit the same run — so that a few slow runs do not keep
    the whole vmapped batch stepping), ``pad_buckets`` (run the flow on the smallest
    bucket ≥ m particles, the extra ones massless copies: they change neither F nor, by the
    mean-field invariance, the others' flow, so the cells of a bucket share one
    compilation)."""

    m: PositiveInt
    seeds: Seeds
    iterations: PositiveInt
    tol: PositiveFloat | None = None
    history_every: PositiveInt | None = None
    step: PositiveFloat | None = None
    step_scale: PositiveFloat = 1.0
    batch_iterations: PositiveInt | None = None
    pad_buckets: list[PositiveInt] | None = None
    batched: bool = True


class DeconvolutionCell(_Cell):
    """``spikes`` m0, Dirichlet ``cutoff`` f_c, ``lam`` λ, ``noise`` σ; ``certify``: also
    the duality gap of every run (costly for 100 seeds)."""

    problem: Literal["deconvolution"]
    spikes: PositiveInt = 4
    cutoff: PositiveInt = 10
    lam: PositiveFloat = 0.5
    noise: NonNegativeFloat = 0.0
    certify: bool = True


class NetworkCell(_Cell):
    """A teacher–student cell: ``input_dim`` d, ``teacher_units`` m0, ``teacher_scale``
    radius of the teacher's (w*, b*), ``teacher_signs`` of its output weights ("random" ±1
    or "positive" +1) and ``output_scale`` their size, ``batch_draws`` how SGD's fresh
    Gaussians are drawn, ``cache_held_out`` the held-out set stored instead of re-drawn at
    each record (these three are TeacherStudent options of issue 16's network work; their
    defaults build the sampler without them), ``bias`` (default: ReLU
    without, sigmoid with); ``training``
    "dataset" (n samples) or "population"; ``method`` "gd" (with ``batch_size``: SGD on
    fresh samples) or "wfr"; ``geometry``; ``init_radius`` (the sphere of μ0 for ReLU),
    ``init_scale`` (μ0's (w, b) ~ N(0, init_scale² I) for sigmoid: the admissible draw
    scaled); ``eval_size`` held-out samples of the recorded history, ``test_size`` fresh
    samples of the final excess estimate, ``baseline_n`` samples of the baseline's least
    squares when the population risk has no closed form."""

    problem: Literal["relu", "sigmoid"]
    input_dim: PositiveInt = 5
    teacher_units: PositiveInt = 4
    n: PositiveInt = 500
    teacher_scale: PositiveFloat = 1.0
    teacher_signs: Literal["random", "positive"] = "random"
    output_scale: PositiveFloat = 1.0
    batch_draws: Literal["exact", "float32"] = "exact"
    cache_held_out: bool = False
    bias: bool | None = None
    training: Literal["dataset", "population"] = "dataset"
    method: Literal["gd", "wfr"] = "gd"
    batch_size: PositiveInt | None = None
    geometry: Literal["euclidean", "conic"] | None = None
    init_radius: PositiveFloat = 1.0
    init_scale: PositiveFloat = 1.0
    eval_size: PositiveInt = 10_000
    test_size: PositiveInt = 100_000
    baseline_n: PositiveInt = 20_000


class CellConfig(RootModel[Annotated[Union[DeconvolutionCell, NetworkCell], Field(discriminator="problem")]]):
    """Configuration of the ``excess_loss.cell`` task (one of the two models by ``problem``)."""

    model_config = ConfigDict(frozen=True)


class FstarConfig(TaskConfig):
    """Configuration of ``excess_loss.fstar``: the signals of ``seeds`` (same keys as a
    deconvolution cell) and the relative duality gap ``tol`` deconvolve certifies."""

    spikes: PositiveInt
    cutoff: PositiveInt
    lam: PositiveFloat
    noise: NonNegativeFloat = 0.0
    seeds: Seeds
    tol: PositiveFloat = 1e-8


def cell_config(problem: str, m: int, seeds, params: dict, *, batched: bool | None = None) -> dict:
    """The validated task configuration of cell (problem, m) with the problem's ``params``
    (a preset's entry; its ``m`` and ``seeds`` are not cell keys); ``batched`` overrides
    the entry's (default True: one ``solve_batch``; False: one ``solve`` per seed)."""
    raw = {k: v for k, v in params.items() if k not in ("m", "seeds")}
    raw.update(problem=problem, m=m, seeds=[int(s) for s in seeds])
    if batched is not None:
        raw["batched"] = batched
    try:
        return CellConfig.model_validate(raw).model_dump(mode="json")
    except pydantic.ValidationError as exc:
        raise ValidationError(f"excess_loss cell {problem} m={m}: {describe_pydantic_error(exc)}") from None


def fstar_config(seeds, params: dict) -> dict:
    """The ``excess_loss.fstar`` configuration of a deconvolution preset entry's signals."""
    keys = {k: params[k] for k in ("spikes", "cutoff", "lam", "noise") if k in params}
    return FstarConfig.model_validate({**keys, "seeds": [int(s) for s in seeds]}).model_dump(mode="json")


# -- problems -------------------------------------------------------------------------------

def signal(cfg: dict, seed: int):
    import measureflow as mf

    return mf.data.SpikeSignal(spikes=cfg["spikes"], dim=1, cutoff=cfg["cutoff"], noise=cfg["noise"], seed=seed)


def teacher_student(cfg: dict, seed: int):
    """The TeacherStudent sampler of a network cell's seed (teacher signs applied)."""
    import measureflow as mf

    relu = cfg["problem"] == "relu"
    bias = (not relu) if cfg["bias"] is None else cfg["bias"]
    extra = {k: cfg[k] for k, default in (("output_scale", 1.0), ("batch_draws", "exact"), ("cache_held_out", False))
             if cfg[k] != default}
    try:
        ts = mf.data.TeacherStudent(cfg["input_dim"], cfg["teacher_units"], "relu" if relu else "sigmoid", bias=bias,
                                    seed=seed, teacher_scale=cfg["teacher_scale"], eval_size=cfg["eval_size"], **extra)
    except TypeError as exc:  # a measureflow without the TeacherStudent options of issue 16's network work
        raise ValidationError(f"{', '.join(extra)} need(s) a TeacherStudent that accepts them ({exc})") from None
    if cfg["teacher_signs"] == "positive":
        teacher = np.array(ts.teacher)
        teacher[:, -1] = np.abs(teacher[:, -1])
        ts = copy.copy(ts)  # same sampler, teacher output weights positive (a leaf: no recompilation)
        object.__setattr__(ts, "params", jnp.asarray(teacher))
    return ts


def build_problem(cfg: dict, seed: int):
    """(problem, source): the BLASSO of the seed's SpikeSignal, or the square loss of the
    seed's teacher on its population (``training="population"``) or on n samples; the
    source is the SpikeSignal or the TeacherStudent."""
    import measureflow as mf
    from measureflow.deconvolution import blasso

    if cfg["problem"] == "deconvolution":
        sig = signal(cfg, seed)
        return blasso(sig, cfg["lam"]), sig
    ts = teacher_student(cfg, seed)
    if cfg["training"] == "population":
        data = ts
    else:
        X = np.asarray(ts.training_set(cfg["n"], seed=seed).X)
        data = mf.data.Dataset(X, np.asarray(ts.target(X)))  # noise-free: F* = 0, attained by the teacher
    return mf.Problem(ts.teacher_feature, "square", None, data), ts


def initial_particles(problem, cfg: dict, seed: int):
    """μ0 = ``mf.init.admissible`` (m particles, masses 1/m); for networks with
    ``init_radius`` (ReLU's sphere) and the non-weight coordinates scaled by ``init_scale``
    (sigmoid: full support is kept)."""
    import measureflow as mf

    feature = problem.feature
    if cfg["problem"] == "deconvolution":
        return mf.init.admissible(feature, cfg["m"], key=seed)
    mu0 = mf.init.admissible(feature, cfg["m"], key=seed, radius=cfg["init_radius"])
    if cfg["init_scale"] != 1.0 and feature.homogeneity.kind == "partial":
        P = np.array(mu0.positions)
        rest = np.arange(P.shape[1]) != feature.weight_index
        P[:, rest] *= cfg["init_scale"]
        mu0 = mf.Particles(P)
    return mu0


# -- evaluation -----------------------------------------------------------------------------

_objective = jax.jit(lambda problem, particles: problem.objective(particles))


@jax.jit
def _squared_errors(feature_problem, particles, X, f_star):
    f = feature_problem.predict(particles, X)
    return 0.5 * (f - f_star) ** 2


def held_out_excess(problem, ts, particles, size: int, seed: int, chunk: int = 20_000) -> tuple[float, float]:
    """(estimate, standard error) of the population excess ½E(f_μ(x) − f*(x))² from
    ``size`` fresh inputs (independent of training and held-out draws: key from
    ``seed`` folded with a constant), in chunks of ``chunk`` samples."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x5E55)
    total, total_sq, done = 0.0, 0.0, 0
    while done < size:
        n = min(chunk, size - done)
        key, sub = jax.random.split(key)
        batch = ts.sample(sub, n)
        e = np.asarray(_squared_errors(problem, particles, batch.X, ts.target(batch.X)), float)
        total, total_sq, done = total + e.sum(), total_sq + (e**2).sum(), done + n
    mean = total / size
    var = max(total_sq / size - mean**2, 0.0) * size / max(size - 1, 1)
    return float(mean), float(np.sqrt(var / size))


# One compiled call per shape (eager kernel evaluations compile op by op, per m).
_second_moments = jax.jit(lambda feature, U, T, inputs: (feature.second_moment(U, U, inputs),
                                                         feature.second_moment(U, T, inputs)), static_argnums=(0, 3))


def _exact_population_baseline(problem, ts, mu0):
    """Random features on the exact population loss: with u_i μ0's input weights frozen and
    b_i = w_i a_i free, R(b) = ½(bᵀGb − 2bᵀg + const), G_ij = E relu(u_i·x) relu(u_j·x),
    g = E relu(u_i·x) f*(x) (closed forms); the minimizer solves G b = g (least squares)."""
    import measureflow as mf

    feature = problem.feature
    U = np.array(mu0.positions)
    c = feature.weight_index
    U[:, c] = 1.0
    T = ts.teacher
    G, K = (np.asarray(a) for a in _second_moments(feature, jnp.asarray(U), T, ts.inputs))
    g = K @ np.full(T.shape[0], 1.0 / T.shape[0])
    b, *_ = np.linalg.lstsq(G, g, rcond=1e-13)
    w = np.asarray(mu0.weights)
    P = np.array(mu0.positions)
    P[:, c] = b / w
    out = mf.Particles(P)
    return out, float(_objective(problem, out)), float(np.abs(G @ b - g).max())


def padded_size(m: int, buckets) -> int:
    """The smallest bucket ≥ m (m itself without buckets or above them all)."""
    above = [b for b in (buckets or ()) if b >= m]
    return min(above) if above else m


def _pad(mu0, size: int):
    """μ0 with ``size`` − m extra massless copies of its first particle."""
    import measureflow as mf

    m = mu0.m
    rows = np.where(np.arange(size) < m, np.arange(size), 0)
    w = np.concatenate([np.asarray(mu0.weights), np.zeros(size - m)])
    return mf.Particles(np.asarray(mu0.positions)[rows], w)


_COMPILATIONS = [0]
_LISTENING = threading.Lock()
_listener_on = False


def count_compilations():
    """Start counting XLA compilations (once per process); returns the running count."""
    global _listener_on
    with _LISTENING:
        if not _listener_on:
            def listen(event, duration, **kwargs):
                if event == "/jax/core/compile/backend_compile_duration":
                    _COMPILATIONS[0] += 1

            jax.monitoring.register_event_duration_secs_listener(listen)
            _listener_on = True
    return _COMPILATIONS[0]


def _flow(cfg, problems, inits):
    """The particle flow of every seed: one solve_batch, or one solve per seed."""
    import measureflow as mf

    deconv = cfg["problem"] == "deconvolution"
    method = "fb" if deconv else cfg["method"]
    T = cfg["iterations"]
    every = cfg["history_every"] or max(1, T // 200)
    kw = dict(method=method, iterations=T, tol=cfg["tol"], history_every=min(every, T))
    if not deconv:
        kw.update(batch_size=cfg["batch_size"], geometry=cfg["geometry"])
    step = cfg["step"]
    if step is None and cfg["step_scale"] != 1.0:
        step = [cfg["step_scale"] * mf.solvers.default_step(pr, mu0, method=method, geometry=kw.get("geometry"))
                for pr, mu0 in zip(problems, inits)]
    keys = list(cfg["seeds"])
    if cfg["batched"]:
        first = min(T, cfg["batch_iterations"] or T)
        out = mf.solve_batch(problems, inits, step=step, keys=keys, snapshots=0, **{**kw, "iterations": first})
        if first < T:
            cont = {k: v for k, v in kw.items() if k in ("tol", "batch_size")}
            for b, r in enumerate(out):
                if r.status == "max_iterations":
                    try:
                        out[b] = mf.solve(problems[b], r, iterations=T - first, **cont)
                    except mf.DivergenceError as err:
                        out[b] = err.result
        return out
    out = []
    for b, (pr, mu0) in enumerate(zip(problems, inits)):
        st = step[b] if isinstance(step, list) else step
        try:
            out.append(mf.solve(pr, mu0, step=st, key=keys[b], snapshots=0, **kw))
        except mf.DivergenceError as err:  # recorded as diverged, like solve_batch does
            out.append(err.result)
    return out


def _padded_histories(flows) -> tuple[np.ndarray, np.ndarray]:
    """Histories (S, H) NaN-padded past each run's stop, on the longest run's iterations."""
    longest = max(flows, key=lambda r: len(np.asarray(r.history_iterations)))
    its = np.asarray(longest.history_iterations)
    hist = np.full((len(flows), len(its)), np.nan)
    for i, r in enumerate(flows):
        h = np.asarray(r.history, float)
        hist[i, :len(h)] = h
    return hist, its


# -- the cell -------------------------------------------------------------------------------

def run_cell(problem: str, m: int, seeds, params: dict, *, batched: bool | None = None) -> tuple[dict, dict]:
    """Run cell (problem, m) for ``seeds`` with the problem's ``params`` (a preset entry):
    the particle flow (all seeds in one ``mf.solve_batch`` if ``batched``, else one
    ``mf.solve`` per seed) and the random-features baseline per seed.

    Returns (metrics, arrays), as the ``excess_loss.cell`` task. Metrics hold one list
    entry per seed: ``initial`` F(μ0) (networks without a closed form: the held-out
    population risk at μ0); ``flow_objective``, ``flow_excess``, ``flow_excess_se`` (0 when
    exact), ``flow_status``, ``flow_iterations``, ``flow_step``; ``baseline_objective``,
    ``baseline_excess``, ``baseline_excess_se``, ``baseline_kkt``; for deconvolution with
    ``certify`` ``*_dual``, ``*_gap`` of both methods; ``excess_kind`` ("exact",
    "certified" or "held_out"); per cell ``flow_wall_s`` (the solve call(s), compilation
    included), ``flow_compilations``, ``baseline_wall_s`` (per seed), ``certificate_wall_s``.
    Arrays: ``flow_history`` (S, H) NaN after a run's stop, ``history_iterations`` (H,),
    ``flow_positions`` / ``baseline_positions`` (S, m, p).
    """
    return compute(cell_config(problem, m, seeds, params, batched=batched))


def compute(cfg: dict) -> tuple[dict, dict]:
    import measureflow as mf
    from measureflow.baselines import random_features

    seeds, m, kind = cfg["seeds"], cfg["m"], cfg["problem"]
    deconv = kind == "deconvolution"
    built = [build_problem(cfg, s) for s in seeds]
    problems = [b[0] for b in built]
    inits = [initial_particles(pr, cfg, s) for pr, s in zip(problems, seeds)]
    size = padded_size(m, cfg["pad_buckets"])
    runs_from = [_pad(mu0, size) for mu0 in inits] if size > m else inits

    c0 = count_compilations()
    t0 = time.perf_counter()
    flows = _flow(cfg, problems, runs_from)
    flow_wall = time.perf_counter() - t0
    compilations = count_compilations() - c0
    finals = [mf.Particles.unchecked(r.particles.positions[:m], r.particles.weights[:m]) for r in flows]

    exact = deconv or problems[0].has_exact_risk or cfg["training"] == "dataset"
    base, base_wall, base_obj, base_kkt = [], [], [], []
    for (pr, src), mu0 in zip(built, inits):
        t = time.perf_counter()
        if deconv or cfg["training"] == "dataset":
            b = random_features(pr, mu0)
            sol, obj, kkt = b.particles, b.objective, b.optimality
        elif pr.has_exact_risk:
            sol, obj, kkt = _exact_population_baseline(pr, src, mu0)
        else:  # least squares on baseline_n samples, then the population excess held out
            X = np.asarray(src.training_set(cfg["baseline_n"], seed=seeds[len(base)]).X)
            train = mf.Problem(pr.feature, "square", None, mf.data.Dataset(X, np.asarray(src.target(X))))
            b = random_features(train, mu0)
            sol, obj, kkt = b.particles, b.objective, b.optimality
        base.append(sol)
        base_obj.append(float(obj))
        base_kkt.append(float(kkt))
        base_wall.append(time.perf_counter() - t)

    t = time.perf_counter()
    flow_obj = [float(_objective(pr, mu)) for pr, mu in zip(problems, finals)]
    metrics = {
        "problem": kind, "m": m, "m0": cfg["spikes"] if deconv else cfg["teacher_units"],
        "seeds": list(seeds), "batched": cfg["batched"], "max_iterations": cfg["iterations"], "tol": cfg["tol"],
        "flow_objective": flow_obj,
        "flow_status": [r.status for r in flows],
        "flow_iterations": [int(r.iteration) for r in flows],
        "flow_step": [float(r.step) for r in flows],
        "baseline_objective": base_obj, "baseline_kkt": base_kkt,
        "flow_wall_s": flow_wall, "flow_compilations": compilations, "baseline_wall_s": base_wall,
        "particles_run": size,
    }
    if exact:
        metrics["excess_kind"] = "certified" if deconv else "exact"
        metrics["initial"] = [float(_objective(pr, mu0)) for pr, mu0 in zip(problems, inits)]
        metrics["flow_excess"], metrics["baseline_excess"] = flow_obj, base_obj  # F* subtracted in the tables
        metrics["flow_excess_se"] = metrics["baseline_excess_se"] = [0.0] * len(seeds)
    else:
        metrics["excess_kind"] = "held_out"
        est = {name: [held_out_excess(pr, src, mu, cfg["test_size"], s) for (pr, src), mu, s in zip(built, sols, seeds)]
               for name, sols in (("initial", inits), ("flow", finals), ("baseline", base))}
        metrics["initial"] = [e for e, _ in est["initial"]]
        for name in ("flow", "baseline"):
            metrics[f"{name}_excess"] = [e for e, _ in est[name]]
            metrics[f"{name}_excess_se"] = [se for _, se in est[name]]
    if deconv and cfg["certify"]:
        for name, sols in (("flow", finals), ("baseline", base)):
            gaps = [mf.certificates.duality_gap(pr, mu) for pr, mu in zip(problems, sols)]
            metrics[f"{name}_dual"] = [g.dual for g in gaps]
            metrics[f"{name}_gap"] = [g.gap for g in gaps]
    metrics["certificate_wall_s"] = time.perf_counter() - t
    hist, its = _padded_histories(flows)
    arrays = {
        "flow_history": hist, "history_iterations": its,
        "flow_positions": np.stack([np.asarray(mu.positions) for mu in finals]),
        "baseline_positions": np.stack([np.asarray(mu.positions) for mu in base]),
    }
    return metrics, arrays


@register_task(TASK, config=CellConfig)
def cell_task(config: dict) -> tuple[dict, dict]:
    """The sweep task: one cell (see :func:`run_cell`)."""
    return compute(config)


@register_task(FSTAR_TASK, config=FstarConfig)
def fstar_task(config: dict) -> tuple[dict, dict]:
    """Certified F* of each seed's BLASSO by ``mf.deconvolution.deconvolve``: the bracket
    [``fstar_dual``, ``fstar_objective``] (dual value ≤ F* ≤ primal value) per seed."""
    from measureflow.deconvolution import blasso, deconvolve

    t = time.perf_counter()
    lower, upper, status = [], [], []
    for s in config["seeds"]:
        res = deconvolve(blasso(signal(config, s), config["lam"]), tol=config["tol"])
        lower.append(float(res.gap.dual))
        upper.append(float(res.gap.objective))
        status.append(str(res.status))
    metrics = {"seeds": list(config["seeds"]), "fstar_dual": lower, "fstar_objective": upper,
               "fstar_status": status, "wall_s": time.perf_counter() - t}
    return metrics, {}
