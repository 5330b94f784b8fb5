"""2. A small problem (n = 15, d = 2, m = 20, 10⁴ GD steps) against what a user would
write instead: a PyTorch eager training loop and a NumPy loop.

All three run the same mean-field GD on the same ReLU network with bias,
θ = (w, b, a) ∈ R⁴, φ = a·relu(w·x + b), F = ½ mean_j (f(x_j) − y_j)², float64, from the
same initial particles with the same step, recording F every 10 steps (``mf.solve``'s
default ``history_every`` for 10⁴ steps); their final particles are checked to agree.
``mf.solve`` is timed as a user calls it (validation, the compiled loop with its default
log-spaced snapshots, the transfer back); its one-time compilation is reported apart.
"""

from __future__ import annotations

import time

import numpy as np

import measureflow as mf
from _harness import Row, best_times, count_compiles, fmt_time

N, D, M, T, STEP, EVERY = 15, 2, 20, 10_000, 0.2, 10


def _setup():
    data = mf.data.TeacherStudent(D, 3, bias=True, seed=0).training_set(N, seed=0)
    feat = mf.features.ReLU(D, bias=True)
    problem = mf.Problem(feat, "square", None, data)
    mu0 = mf.init.admissible(feat, M, key=0)
    return problem, mu0, np.asarray(data.X), np.asarray(data.y), np.asarray(mu0.positions)


def numpy_loop(X, y, P0, T=T, step=STEP):
    """GD written the obvious way in NumPy, gradients by hand."""
    W, b, a = P0[:, :D].copy(), P0[:, D].copy(), P0[:, D + 1].copy()
    m, n = len(a), len(y)
    hist = []
    for t in range(T):
        Z = W @ X.T + b[:, None]
        R = np.maximum(Z, 0.0)
        f = a @ R / m
        r = f - y
        if t % EVERY == 0:
            hist.append(0.5 * np.mean(r**2))
        g = r / n                                  # ∂F/∂f_j
        Dz = (Z > 0) * g[None, :] * a[:, None]     # mean-field velocity: m ∂F/∂θ_i
        W -= step * (Dz @ X)
        b -= step * Dz.sum(axis=1)
        a -= step * (R @ g)
    return np.column_stack([W, b, a]), hist


def torch_loop(X, y, P0, T=T, step=STEP):
    """GD written the obvious way in PyTorch eager mode, gradients by autograd."""
    import torch

    Xt, yt = torch.tensor(X), torch.tensor(y)
    P = torch.tensor(P0, requires_grad=True)
    m = P.shape[0]
    hist = []
    for t in range(T):
        W, b, a = P[:, :D], P[:, D], P[:, D + 1]
        f = (a[:, None] * torch.relu(W @ Xt.T + b[:, None])).mean(0)
        loss = 0.5 * ((f - yt) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            P -= step * m * P.grad  # mean-field scaling: velocity = (1/w_i) ∂F/∂θ_i
            P.grad.zero_()
        if t % EVERY == 0:
            hist.append(loss.item())
    return P.detach().numpy(), hist


def run(quick: bool) -> list[Row]:
    problem, mu0, X, y, P0 = _setup()

    def solve():
        return mf.solve(problem, mu0, "gd", step=STEP, iterations=T)

    def solve_bare():
        return mf.solve(problem, mu0, "gd", step=STEP, iterations=T, history_every=T, snapshots=0)

    with count_compiles() as log:
        t0 = time.perf_counter()
        res = solve()
        first = time.perf_counter() - t0
    solve_bare()
    try:
        import torch

        default_threads = torch.get_num_threads()
        # default threads: timed on a few steps only (intra-op threads only add
        # synchronization on 20 × 15 tensors, and busy-wait on a loaded machine)
        t0 = time.perf_counter()
        torch_loop(X, y, P0, T=200)
        torch_default = (time.perf_counter() - t0) / 200
        torch.set_num_threads(1)  # the faster setting for tiny tensors: the conservative comparison
        torch_loop(X, y, P0, T=10)  # warm-up of the dispatcher
        have_torch = True
    except ImportError:
        have_torch = False
    P_np, _ = numpy_loop(X, y, P0)
    agree = np.allclose(res.particles.positions, P_np, rtol=1e-8, atol=1e-10)
    fns = {"mf": solve, "mf_bare": solve_bare, "numpy": lambda: numpy_loop(X, y, P0)}
    if have_torch:
        P_torch, _ = torch_loop(X, y, P0)
        agree &= np.allclose(res.particles.positions, P_torch, rtol=1e-8, atol=1e-10)
        fns["torch"] = lambda: torch_loop(X, y, P0)
    t = best_times(fns, reps=3 if quick else 7)
    check = "final particles agree (1e-8)" if agree else "WARNING: final particles DIFFER"
    rows = [Row("2 small problem", f"mf.solve, n={N} d={D} m={M}, {T} steps", t["mf"], fmt_time(t["mf"]),
                note=f"{T / t['mf'] / 1e6:.2f} M steps/s; bare (no snapshots, 2 history points) "
                     f"{fmt_time(t['mf_bare'])}; {check}"),
            Row("2 small problem", "mf.solve compilation (one time)", log.seconds, fmt_time(log.seconds),
                note=f"{log.compiles} XLA compilations, first call {fmt_time(first)} in all")]
    if have_torch:
        r = t["torch"] / t["mf"]
        rows.append(Row("2 small problem", "speed-up vs PyTorch eager loop", r, f"{r:.1f}×", "≥ 10×", r >= 10,
                        f"torch {fmt_time(t['torch'])} ({t['torch'] / T * 1e6:.1f} µs/step) with 1 thread, its "
                        f"faster setting here ({default_threads} threads: {torch_default * 1e6:.0f} µs/step); "
                        "excl. mf compilation"))
        torch.set_num_threads(default_threads)
    r = t["numpy"] / t["mf"]
    rows.append(Row("2 small problem", "speed-up vs NumPy loop", r, f"{r:.1f}×", "",
                    None, f"numpy {fmt_time(t['numpy'])} ({t['numpy'] / T * 1e6:.1f} µs/step)"))
    return rows
